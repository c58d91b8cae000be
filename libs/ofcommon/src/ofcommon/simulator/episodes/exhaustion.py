"""Exhaustion: a push makes new extremes bar after bar while its aggressive volume dries up, the
extreme itself trades thin, the other side takes over at the top, and price reverses.
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
    order_count,
    split,
    spread_times,
    through,
    tighten,
)
from ofcommon.simulator.exchange import SELL
from ofcommon.simulator.labels import Label

__all__ = ["run"]


def run(ctx: EpisodeContext, t0: int, direction: int) -> Label:
    """``direction`` is the suggested trade: -1 means buyers exhaust at a high (then price falls).

    ``min_bars_declining`` + 1 bars from ``t0``. Bar k's extreme is 1-3 ticks beyond bar k-1's
    (the first beyond every print of the ten bars before ``t0``), traded only by one 1-4 % print
    30-42 s into the bar. Volume falls by a factor of 0.70-0.80 per bar (more if the decline
    threshold demands it) and the pushing side's share from 72 % to 50 %, so delta fades to zero;
    in the last bar most responsive volume trades after the extreme.
    """
    x, flow, rng, inst = ctx.x, ctx.flow, ctx.rng, ctx.inst
    params = inst.exhaustion
    push = -direction
    side = BUY if push > 0 else SELL
    flow.run_until(t0)
    flow.script()
    tighten(x)
    bars = params.min_bars_declining + 1
    touch = x.book.touch(side)
    prior = x.recent_high(t0, 10) if push > 0 else x.recent_low(t0, 10)
    extreme = (max(touch, prior) if push > 0 else min(touch, prior)) + push * rng.randint(1, 3)
    # Decline per bar: steeper when the threshold asks for it, leaving 15 points of margin.
    needed = min(0.95, params.volume_decline_pct + 0.15)
    ratio = min(rng.uniform(0.70, 0.80), (1.0 - needed) ** (1.0 / params.min_bars_declining))
    volume = rng.uniform(1.3, 1.5) * max(x.recent_volume(t0, 10), ctx.profile.bar_lots)
    orders: list[Order] = []
    volumes: list[float] = []
    deltas: list[float] = []
    extremes: list[int] = []
    for b in range(bars):
        start = t0 + b * MINUTE_NS
        last = b == bars - 1
        peak_t = start + int(rng.uniform(30.0, 42.0) * SECOND)
        end_touch = extreme - push * rng.randint(1, 2)
        # The extreme trades only at its instant: the thin "exhaustion print".
        path = through(
            [
                (start, touch),
                (peak_t, extreme),
                (peak_t + 1, extreme - push),
                (start + 58 * SECOND, end_touch),
            ]
        )
        lots = max(8, round(volume * ratio**b))
        share = 0.72 - 0.22 * b / (bars - 1)
        pushing = max(3, round(lots * share))
        against = lots - pushing
        tip = max(1, round(pushing * rng.uniform(0.01, 0.04)))
        orders.append(Order(peak_t, side, tip, path))
        sizes = split(rng, pushing - tip, order_count(ctx, share))
        before = max(1, round(len(sizes) * 0.8))
        when = spread_times(rng, start + SECOND // 5, peak_t, before)
        when += spread_times(rng, peak_t + 1, start + 58 * SECOND, len(sizes) - before)
        orders += [Order(t, side, q, path) for t, q in zip(when, sizes, strict=True)]
        parts = split(rng, against, order_count(ctx, 1.0 - share))
        late = round(len(parts) * (0.7 if last else 0.3))
        when = spread_times(rng, start + SECOND, peak_t, len(parts) - late)
        when += spread_times(rng, peak_t + 1, start + 59 * SECOND, late)
        orders += [
            Order(t, -side, q, path, ref_side=side) for t, q in zip(when, parts, strict=True)
        ]
        volumes.append(x.size(lots))
        deltas.append(push * math.copysign(x.size(abs(pushing - against)), pushing - against))
        extremes.append(extreme)
        touch = end_touch
        extreme += push * rng.randint(1, 3)
    execute(ctx, orders)
    end = t0 + bars * MINUTE_NS
    flow.run_until(end)
    flow.release()
    reversal = rng.randint(2, 4) * max(2, math.ceil(inst.initiative.min_price_displacement_ticks))
    reversal_s = rng.uniform(60.0, 120.0)
    flow.impulse(-push * reversal, reversal_s, -0.2 * push)
    return ctx.label(
        "exhaustion",
        direction,
        t0,
        end,
        [extremes[-1]],
        {
            "bars": bars,
            "volume_per_bar": volumes,
            "delta_per_bar": deltas,
            "extremes": [x.price(t) for t in extremes],
            "volume_decline": round(1.0 - volumes[-1] / volumes[0], 4),
            "volume_decline_pct": params.volume_decline_pct,
            "min_bars_declining": params.min_bars_declining,
            "reversal_ticks": reversal,
            "reversal_end_ns": end + int(reversal_s * SECOND),
        },
    )
