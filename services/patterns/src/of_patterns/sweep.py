"""Sweep: several book levels taken by trades within milliseconds (seed §8.3, landscape §2.8).

From the analytics ``Consumption`` events (size removed from a level, split into traded and
cancelled): an event counts when trades took at least half of what left the level (a pulled
order is not a sweep; the seed could not tell). The sweep fires on the event that makes
``min_levels_swept`` distinct levels of one aggressor side within ``max_time_ms`` of event time,
with at most the level-size threshold traded per level on average and at least the sweep-size
threshold in all (``thresholds.Limits``: the background's small prints walking the touch are not a
sweep). Thin-book confirmation: the
last valid ``BookStats`` showed thin levels on the swept side (a strength term and evidence).
Direction: the aggressor's (asks taken -> LONG). Decision time: the completing removal's event
time + ``found.SETTLE_NS``. Event time only: the seed's wall-clock cooldown
and window made sweeps impossible on a live feed. After a signal the side waits ``max_time_ms``.
"""

from __future__ import annotations

import msgspec

from of_patterns.found import SETTLE_NS, Found, clamp01
from of_patterns.thresholds import Limits
from ofcommon.instruments import Instrument
from ofcommon.messages import BookStats, Consumption, Direction, Side

_MS = 1_000_000


class Take(msgspec.Struct, array_like=True, gc=False):
    ts: int
    side: int
    price: float
    traded: float


class SweepState(msgspec.Struct):
    takes: list[Take] = msgspec.field(default_factory=list)
    fired_buy: int = 0
    fired_sell: int = 0


def thin_sides(b: BookStats) -> tuple[int, int]:
    """(thin asks, thin bids) of a book statistics message; none while the book is invalid."""
    if not b.valid:
        return 0, 0
    mid = 0.5 * (b.best_bid + b.best_ask)
    return sum(1 for p in b.thin_levels if p > mid), sum(1 for p in b.thin_levels if p < mid)


def on_consumption(
    state: SweepState, c: Consumption, thin: tuple[int, int], inst: Instrument, lim: Limits
) -> Found | None:
    """``thin``: (thin asks, thin bids) of the book before the sweep."""
    p = inst.sweep
    window = p.max_time_ms * _MS
    state.takes = [t for t in state.takes if c.ts_event - t.ts <= window]
    if c.removed <= 0 or c.traded < 0.5 * c.removed:
        return None
    state.takes.append(Take(c.ts_event, int(c.side), c.price, c.traded))
    fired = state.fired_buy if c.side == Side.BUY else state.fired_sell
    if fired and c.ts_event - fired <= window:
        return None
    mine = [t for t in state.takes if t.side == c.side and t.ts >= fired]
    levels = {t.price for t in mine}
    if len(levels) < p.min_levels_swept:
        return None
    volume = sum(t.traded for t in mine)
    per_level = volume / len(levels)
    if per_level > lim.sweep_level_volume or volume < lim.sweep_volume:
        return None
    if c.side == Side.BUY:
        state.fired_buy = c.ts_event
    else:
        state.fired_sell = c.ts_event
    thin_n = thin[0] if c.side == Side.BUY else thin[1]
    span_ms = (max(t.ts for t in mine) - min(t.ts for t in mine)) / _MS
    strength = 40.0 * clamp01(len(levels) / (2.0 * p.min_levels_swept))
    strength += 30.0 * (1.0 - clamp01(span_ms / max(p.max_time_ms, 1)))
    strength += 30.0 * clamp01(thin_n / 2.0)
    price = max(levels) if c.side == Side.BUY else min(levels)
    return Found(
        "sweep",
        Direction.LONG if c.side == Side.BUY else Direction.SHORT,
        price,
        strength,
        c.ts_event + SETTLE_NS,
        {
            "levels_swept": len(levels),
            "volume": volume,
            "volume_per_level": per_level,
            "level_threshold": lim.sweep_level_volume,
            "volume_threshold": lim.sweep_volume,
            "span_ms": span_ms,
            "thin_levels": thin_n,
            "from_price": min(levels) if c.side == Side.BUY else max(levels),
            "onset_ts": min(t.ts for t in mine),
        },
    )
