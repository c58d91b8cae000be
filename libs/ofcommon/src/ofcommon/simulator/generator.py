"""The pure simulator: a seed and a configuration in, every instrument's messages and labels out
in event-time order. No I/O, no clock, no global randomness.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from operator import itemgetter
from random import Random
from typing import Annotated, Final

import msgspec

from ofcommon.instruments import Instrument
from ofcommon.sessions import session_bounds
from ofcommon.simulator.episodes import EPISODES, EpisodeContext
from ofcommon.simulator.exchange import MINUTE_NS, Exchange, Item, Output
from ofcommon.simulator.flow import Flow
from ofcommon.simulator.labels import EPISODE_PATTERNS
from ofcommon.simulator.profiles import profile_for

__all__ = ["SimConfig", "events", "instrument_events", "simulate"]

SECOND: Final = 1_000_000_000
_CHUNK: Final = SECOND  # background generated between yields: bounds memory and latency
_IDLE_CHUNK: Final = 60 * SECOND
_EPISODE_ROOM: Final = 15 * MINUTE_NS  # an episode starts only if the session lasts this long
_OPEN_GAP_TICKS: Final = 8.0  # standard deviation of the price gap between two sessions


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run depends on: the same config gives byte-identical output.

    ``duration_ns`` = 0 runs for ever. Output up to any time does not depend on the duration: a
    longer run extends a shorter one.
    """

    instruments: tuple[Instrument, ...]
    start_ns: int
    seed: int = 42
    duration_ns: Annotated[int, msgspec.Meta(ge=0)] = 0
    heartbeat_ns: Annotated[int, msgspec.Meta(ge=0)] = SECOND
    book_depth: Annotated[int, msgspec.Meta(ge=5, le=200)] = 20
    episode_gap_s: Annotated[float, msgspec.Meta(gt=0)] = 180.0
    patterns: tuple[str, ...] = EPISODE_PATTERNS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.patterns) - set(EPISODES))
        if unknown:
            raise ValueError(f"unknown episode patterns {unknown} (known: {', '.join(EPISODES)})")
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"instruments repeat: {symbols}")


def instrument_events(config: SimConfig, inst: Instrument) -> Iterator[Output]:
    """(event time, item) of one instrument, in event-time order, until the configured end."""
    end = config.start_ns + config.duration_ns if config.duration_ns else None
    for batch in _batches(config, inst):
        for out in batch:
            if end is not None and out[0] >= end:
                return
            yield out
        batch.clear()


def _batches(config: SimConfig, inst: Instrument) -> Iterator[list[Output]]:
    # Each instrument has its own random stream, so adding an instrument changes no other's run.
    rng = Random(f"{config.seed}:{inst.symbol}")
    profile = profile_for(inst)
    x = Exchange(
        profile,
        rng,
        start_ns=config.start_ns,
        depth=config.book_depth,
        heartbeat_ns=config.heartbeat_ns,
    )
    flow = Flow(x, profile, rng, config.seed)
    ctx = EpisodeContext(x, flow, inst, profile, rng, config.seed)
    spec = inst.session_spec
    deck: list[str] = []
    gap_ns = int(config.episode_gap_s * SECOND)

    def after(t: int) -> int:
        return t + int(gap_ns * rng.uniform(0.5, 1.5))

    x.snapshot()
    next_episode = after(x.now)
    while True:
        opens, closes = session_bounds(spec, x.now)
        if x.now < opens:
            # Closed: heartbeats only, then the book reopens away from where it closed.
            while x.now < opens:
                x.advance(min(opens, x.now + _IDLE_CHUNK))
                yield x.out
            flow.reopen(round(rng.gauss(0.0, _OPEN_GAP_TICKS)))
            next_episode = max(next_episode, after(x.now))
        while x.now < closes:
            flow.run_until(min(x.now + _CHUNK, closes, next_episode))
            if x.now >= next_episode:
                t0 = -(-x.now // MINUTE_NS) * MINUTE_NS  # episodes start on a bar open
                if t0 + _EPISODE_ROOM <= closes and config.patterns:
                    if not deck:
                        deck = list(config.patterns)
                        rng.shuffle(deck)
                    pattern = deck.pop()
                    if pattern == "sweep":
                        t0 += rng.randint(10, 40) * SECOND  # sweeps strike inside a bar
                    episode = EPISODES[pattern]
                    episode.run(ctx, t0, episode.direction(ctx))
                next_episode = after(x.now)
            yield x.out
        flow.close_phase(x.now)


def events(config: SimConfig) -> Iterator[Output]:
    """(event time, item) of every instrument, merged in event-time order.

    Ties go to the instrument listed first; within an instrument, emission order.
    """
    streams = [instrument_events(config, inst) for inst in config.instruments]
    return heapq.merge(*streams, key=itemgetter(0))


def simulate(config: SimConfig) -> Iterator[Item]:
    """Every message (as ``Published``: symbol, stream kind, message) and label, in event-time
    order."""
    for _, item in events(config):
        yield item
