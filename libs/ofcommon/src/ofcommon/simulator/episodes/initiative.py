"""Initiative drive: one-sided aggression that moves price bar after bar on accelerating volume.

Each bar of the drive trades more than the last, with delta and body in the drive's direction.
"""

from __future__ import annotations

import math

from ofcommon.simulator.book import BUY
from ofcommon.simulator.episodes.common import (
    MINUTE_NS,
    MS,
    SECOND,
    EpisodeContext,
    Order,
    execute,
    linear,
    lots_of,
    order_count,
    split,
    spread_times,
    tighten,
)
from ofcommon.simulator.exchange import SELL
from ofcommon.simulator.labels import Label

__all__ = ["run"]

BARS = 3


def run(ctx: EpisodeContext, t0: int, direction: int) -> Label:
    """``direction`` 1 drives up (buyers lift the offer), -1 down.

    Bar volumes start at 2.0-2.4 x the mean of the ten bars before ``t0`` (at least 1.4 x the
    delta threshold after the responsive share) and grow 20-35 % per bar; 10-18 % of each bar is
    responsive. The aggressor's touch walks ``min_price_displacement_ticks`` + 1-3 ticks per bar,
    and the bar opens and closes with aggressor prints, so body = displacement.
    """
    x, flow, rng, inst = ctx.x, ctx.flow, ctx.rng, ctx.inst
    params = inst.initiative
    lot = ctx.profile.lot
    side = BUY if direction > 0 else SELL
    flow.run_until(t0)
    flow.script()
    tighten(x)
    baseline = x.recent_volume(t0, 10)
    responsive = rng.uniform(0.10, 0.18)
    volume = max(
        rng.uniform(2.0, 2.4) * max(baseline, ctx.profile.bar_lots),
        1.4 * lots_of(params.min_delta_threshold, lot) / (1.0 - 2.0 * responsive),
    )
    touch = first = x.book.touch(side)
    orders: list[Order] = []
    volumes: list[float] = []
    deltas: list[float] = []
    bodies: list[float] = []
    for b in range(BARS):
        start = t0 + b * MINUTE_NS
        lots = math.ceil(volume)
        against = max(1, round(lots * responsive))
        body = math.ceil(params.min_price_displacement_ticks) + rng.randint(1, 3)
        path = linear(start, touch, start + 55 * SECOND, touch + direction * body)
        sizes = split(rng, lots - against, order_count(ctx, 1.0 - responsive))
        open_t = start + rng.randint(5, 300) * MS
        close_t = start + int(rng.uniform(57.0, 59.5) * SECOND)
        times = [open_t, *spread_times(rng, open_t + 1, close_t, len(sizes) - 2), close_t]
        orders += [Order(t, side, q, path) for t, q in zip(times, sizes, strict=True)]
        parts = split(rng, against, order_count(ctx, responsive))
        when = spread_times(rng, start + 2 * SECOND, start + 55 * SECOND, len(parts))
        orders += [
            Order(t, -side, q, path, ref_side=side) for t, q in zip(when, parts, strict=True)
        ]
        volumes.append(x.size(lots))
        deltas.append(direction * x.size(lots - 2 * against))
        bodies.append(body)
        touch += direction * body
        volume *= rng.uniform(1.2, 1.35)
    execute(ctx, orders)
    end = t0 + BARS * MINUTE_NS
    flow.run_until(end)
    flow.release()
    flow.impulse(direction * bodies[-1], 60.0, 0.1 * direction)
    return ctx.label(
        "initiative",
        direction,
        t0,
        end,
        [first, touch],
        {
            "bars": BARS,
            "volume_per_bar": volumes,
            "delta_per_bar": deltas,
            "body_ticks": bodies,
            "baseline_volume": x.size(round(baseline)),
            "min_delta_threshold": params.min_delta_threshold,
            "volume_acceleration_min": params.volume_acceleration_min,
            "min_price_displacement_ticks": params.min_price_displacement_ticks,
        },
    )
