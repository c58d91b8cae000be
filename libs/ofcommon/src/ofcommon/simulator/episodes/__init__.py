"""Injected, labelled order-flow episodes: one module per pattern, each a script that prints its
trades through the venue and returns the label describing what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ofcommon.simulator.episodes import absorption, divergence, exhaustion, initiative, sweep
from ofcommon.simulator.episodes.common import EpisodeContext
from ofcommon.simulator.labels import Label

__all__ = ["EPISODES", "Episode", "EpisodeContext", "Script"]

Script = Callable[[EpisodeContext, int, int], Label]
"""(context, start event time ns, direction) -> the label of what was injected."""

_LOOKBACK_BARS: Final = 10


@dataclass(frozen=True)
class Episode:
    run: Script
    # Patterns that happen *at an extreme* push towards the nearer one: a push to a far extreme
    # would be a drive of its own before the pattern even starts.
    at_extreme: bool = False

    def direction(self, ctx: EpisodeContext) -> int:
        """The suggested trade of the next episode: a coin, or away from the nearer extreme."""
        if not self.at_extreme:
            return 1 if ctx.rng.random() < 0.5 else -1
        x = ctx.x
        high = x.recent_high(x.now, _LOOKBACK_BARS)
        low = x.recent_low(x.now, _LOOKBACK_BARS)
        return -1 if high - x.book.ask <= x.book.bid - low else 1


EPISODES: Final[dict[str, Episode]] = {
    "absorption": Episode(absorption.run),
    "initiative": Episode(initiative.run),
    "sweep": Episode(sweep.run),
    "exhaustion": Episode(exhaustion.run, at_extreme=True),
    "divergence": Episode(divergence.run, at_extreme=True),
}
