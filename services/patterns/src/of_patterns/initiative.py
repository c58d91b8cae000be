"""Initiative auction: one-sided aggression that moves price on expanding volume (seed §8.2).

A closed bar fires when all of: (1) |delta| >= the delta threshold; (2) volume / the mean volume
of the ``AVERAGE_BARS`` closed bars *before* it >= ``volume_acceleration_min`` (the seed averaged
in the current bar); (3) body >= ``min_price_displacement_ticks`` instrument ticks (the seed's
``max(tick, 0.01)`` made FX need 300 pips); (4) with ``delta_price_alignment``, the body goes the
delta's way. (5) same-side footprint imbalances are a bonus. Direction: the delta's.

Strength: the mean of four terms each saturating at twice its threshold (delta, acceleration,
body; imbalances at three rows), so no single term dominates (the seed's body x 5 did).
"""

from __future__ import annotations

from typing import Final

from of_patterns.found import Found, clamp01
from of_patterns.history import BarPoint
from of_patterns.thresholds import Limits
from ofcommon.instruments import Instrument
from ofcommon.messages import Bar, Direction, Side

AVERAGE_BARS: Final = 20


def on_bar(history: list[BarPoint], bar: Bar, inst: Instrument, lim: Limits) -> Found | None:
    """``history``: the closed bars before ``bar``, oldest first."""
    p = inst.initiative
    prior = history[-AVERAGE_BARS:]
    if not prior:
        return None
    d = bar.delta
    if abs(d) < lim.initiative_delta or d == 0:
        return None
    avg = sum(b.volume for b in prior) / len(prior)
    accel = bar.volume / avg if avg > 0 else 0.0
    if accel < p.volume_acceleration_min:
        return None
    body = bar.close - bar.open
    body_ticks = abs(body) / inst.tick_size
    if body_ticks + 1e-9 < p.min_price_displacement_ticks:
        return None
    if p.delta_price_alignment and (body > 0) != (d > 0):
        return None
    side = Side.BUY if d > 0 else Side.SELL
    stacked = sum(1 for i in bar.imbalances if i.side == side)
    terms = (
        clamp01(abs(d) / (2.0 * lim.initiative_delta)),
        clamp01(accel / (2.0 * max(p.volume_acceleration_min, 1e-9))),
        clamp01(body_ticks / (2.0 * max(p.min_price_displacement_ticks, 1.0))),
        clamp01(stacked / 3.0),
    )
    return Found(
        "initiative",
        Direction.LONG if d > 0 else Direction.SHORT,
        bar.close,
        25.0 * sum(terms),
        bar.close_ts,
        {
            "delta": d,
            "delta_threshold": lim.initiative_delta,
            "volume": bar.volume,
            "avg_volume": round(avg, 6),
            "vol_acceleration": round(accel, 3),
            "body_ticks": round(body_ticks, 2),
            "imbalance_rows": stacked,
        },
    )
