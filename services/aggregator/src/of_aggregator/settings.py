"""The aggregator's settings: the stage's ownership settings plus the trade machine's main rules.

Defaults are ``MachineParams``'s and ``Risk``'s (one place); docs/aggregator.md explains each.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec

from of_aggregator.machine import MachineParams
from of_aggregator.scoring import Risk
from ofcommon.settings import OwnedStageSettings, PositiveFloat

_M: Final = MachineParams()
_R: Final = Risk()
Score = Annotated[float, msgspec.Meta(ge=0, le=100)]


class AggregatorSettings(OwnedStageSettings, kw_only=True, frozen=True):
    aggregator_min_score: Score = _M.min_score
    aggregator_min_rr: PositiveFloat = _R.min_rr
    aggregator_watch_rows: PositiveFloat = _M.watch_rows
    aggregator_counter_bias: bool = _M.counter_bias
    aggregator_watch_timeout_s: PositiveFloat = _M.watch_timeout_s
    aggregator_max_hold_s: PositiveFloat = _M.max_hold_s
    aggregator_exit_strength: Score = _M.exit_strength

    docs: ClassVar = {
        **OwnedStageSettings.docs,
        "aggregator_min_score": "composite score an entry needs (0-100)",
        "aggregator_min_rr": "minimum reward-to-risk of an entry; below it the entry is rejected",
        "aggregator_watch_rows": "profile rows from a level within which price watches it",
        "aggregator_counter_bias": "also trade levels against the daily bias",
        "aggregator_watch_timeout_s": "event-time seconds a watch lasts without an entry",
        "aggregator_max_hold_s": "event-time seconds a trade is held at most",
        "aggregator_exit_strength": "opposite exhaustion/divergence strength that closes a trade",
    }

    def machine(self) -> MachineParams:
        return msgspec.structs.replace(
            _M,
            min_score=self.aggregator_min_score,
            watch_rows=self.aggregator_watch_rows,
            counter_bias=self.aggregator_counter_bias,
            watch_timeout_s=self.aggregator_watch_timeout_s,
            max_hold_s=self.aggregator_max_hold_s,
            exit_strength=self.aggregator_exit_strength,
            risk=msgspec.structs.replace(_R, min_rr=self.aggregator_min_rr),
        )
