"""Absorption: heavy one-sided aggression into a level that holds because resting size refills.

After the hold, price turns away from the level: the confirmation professionals wait for.
"""

from __future__ import annotations

import math

from ofcommon.simulator.book import BUY
from ofcommon.simulator.episodes.common import (
    MINUTE_NS,
    SECOND,
    EpisodeContext,
    Order,
    execute,
    lots_of,
    order_count,
    split,
    spread_times,
    tighten,
)
from ofcommon.simulator.exchange import SELL
from ofcommon.simulator.labels import Label

__all__ = ["run"]


def run(ctx: EpisodeContext, t0: int, direction: int) -> Label:
    """``direction`` is the suggested trade: -1 means buyers are absorbed at an ask that holds.

    For each of ``max(2, min_attempts)`` one-minute bars from ``t0`` (a bar open): aggressive
    volume of 1.3-1.8 x ``min_aggressive_volume`` hits the level at the background's order pace,
    each order followed by a passive refill; a few responsive prints on the other side of the
    spread close the bar against the aggression (a red bar with positive delta, or the mirror).
    Nothing prints beyond the level.
    """
    x, flow, rng, inst = ctx.x, ctx.flow, ctx.rng, ctx.inst
    params = inst.absorption
    lot = ctx.profile.lot
    aggressor = BUY if direction < 0 else SELL
    responder = -aggressor
    flow.run_until(t0)
    flow.script()
    tighten(x)
    level = x.book.touch(aggressor)
    flow.protected.add(level)
    bars = max(2, params.min_attempts)
    orders: list[Order] = []
    volumes: list[float] = []
    opposite: list[float] = []
    for b in range(bars):
        start = t0 + b * MINUTE_NS
        volume = lots_of(params.min_aggressive_volume * rng.uniform(1.3, 1.8), lot)
        sizes = split(rng, volume, order_count(ctx, 0.9))
        first = start + rng.randint(5, 400) * 1_000_000
        times = [first, *spread_times(rng, first + 1, start + 48 * SECOND, len(sizes) - 1)]
        orders += [
            Order(t, aggressor, q, refill_ms=rng.uniform(2.0, 40.0))
            for t, q in zip(times, sizes, strict=True)
        ]
        answer = lots_of(volume * lot * rng.uniform(0.04, 0.10), lot)
        early, late = split(rng, answer, 2) if answer > 1 else (0, answer)
        if early:
            parts = split(rng, early, order_count(ctx, 0.05))
            when = spread_times(rng, start + 2 * SECOND, start + 48 * SECOND, len(parts))
            orders += [Order(t, responder, q) for t, q in zip(when, parts, strict=True)]
        parts = split(rng, late, max(2, order_count(ctx, 0.02)))
        when = spread_times(rng, start + 50 * SECOND, start + 58 * SECOND, len(parts))
        orders += [Order(t, responder, q) for t, q in zip(when, parts, strict=True)]
        volumes.append(x.size(volume))
        opposite.append(x.size(answer))
    execute(ctx, orders)
    end = t0 + bars * MINUTE_NS
    flow.run_until(end)
    flow.release()
    max_ticks = params.max_price_displacement_ticks
    reversal = rng.randint(2 * math.ceil(max_ticks) + 2, 2 * math.ceil(max_ticks) + 6)
    reversal_s = rng.uniform(40.0, 90.0)
    flow.impulse(direction * reversal, reversal_s, 0.2 * direction)
    return ctx.label(
        "absorption",
        direction,
        t0,
        end,
        [level],
        {
            "aggressor": "buy" if aggressor == BUY else "sell",
            "bars": bars,
            "volume_per_bar": volumes,
            "aggressive_volume": x.size(lots_of(sum(volumes), lot)),
            "responsive_volume_per_bar": opposite,
            "refills": sum(1 for o in orders if o.refill_ms > 0),
            "excursion_ticks": 0,
            "min_aggressive_volume": params.min_aggressive_volume,
            "max_price_displacement_ticks": max_ticks,
            "min_attempts": params.min_attempts,
            "reversal_ticks": reversal,
            "reversal_end_ns": end + int(reversal_s * SECOND),
        },
    )
