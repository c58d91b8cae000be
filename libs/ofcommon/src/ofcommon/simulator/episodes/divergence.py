"""Delta divergence (swing form): price makes a new extreme while cumulative delta makes a lower
high (or a higher low), then price turns.
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

BARS = 6
FIRST_HIGH_BAR = 2  # 1-based: the bar that sets the first swing extreme
SECOND_HIGH_BAR = 6


def run(ctx: EpisodeContext, t0: int, direction: int) -> Label:
    """``direction`` is the suggested trade: -1 is bearish (higher high, lower delta high).

    Six bars from ``t0``, in the swing's direction s = -direction: two bars of strong s-side delta
    up to a first extreme P1 beyond every print of the ``lookback_bars`` bars before ``t0``; two
    pullback bars of opposite delta; two bars back out to P2 = P1 + ``min_price_new_extreme_ticks``
    + 1-3 ticks on weak s-side delta. Cumulative delta from ``t0`` at P2's bar close is 40 % to
    (``delta_failure_pct`` - 10 points) of its value at P1's bar close.
    """
    x, flow, rng, inst = ctx.x, ctx.flow, ctx.rng, ctx.inst
    params = inst.divergence
    swing = -direction
    side = BUY if swing > 0 else SELL
    flow.run_until(t0)
    flow.script()
    tighten(x)
    touch = x.book.touch(side)
    lookback = params.lookback_bars
    prior = x.recent_high(t0, lookback) if swing > 0 else x.recent_low(t0, lookback)
    leg = max(3, math.ceil(1.5 * inst.initiative.min_price_displacement_ticks))
    p1 = touch + swing * 2 * leg
    p1 = max(p1, prior + 2) if swing > 0 else min(p1, prior - 2)
    beyond = math.ceil(params.min_price_new_extreme_ticks) + rng.randint(1, 3)
    p2 = p1 + swing * beyond
    half = touch + (p1 - touch) // 2
    # (start, extreme, end) of each bar's aggressor-touch path, in ticks.
    shapes = [
        (touch, half, half),
        (half, p1, p1 - swing),
        (p1 - swing, p1 - swing, p1 - swing * leg),
        (p1 - swing * leg, p1 - swing * leg, p1 - swing * (3 * leg) // 2),
        (p1 - swing * (3 * leg) // 2, p1 - swing * (leg // 2 + 1), p1 - swing * (leg // 2 + 1)),
        (p1 - swing * (leg // 2 + 1), p2, p2 - swing),
    ]
    # Cumulative delta (lots, swing-signed) at bar closes: 2a at P1, 2a*g at P2.
    base = max(x.recent_volume(t0, 10), ctx.profile.bar_lots)
    a = round(base * rng.uniform(0.5, 0.7))
    # g: how much of the first peak's delta the second peak keeps; below the failure fraction.
    floor = min(0.4, 0.5 * params.delta_failure_pct)
    g = rng.uniform(floor, max(floor, params.delta_failure_pct - 0.1))
    low = round(2 * a * g * 0.6)  # the pullback's cumulative delta, below the second peak
    top = round(2 * a * g)
    steps = [a, a, (low - 2 * a) // 2, low - 2 * a - (low - 2 * a) // 2, (top - low) // 2]
    steps.append(top - low - steps[-1])
    orders: list[Order] = []
    volumes: list[float] = []
    cvd: list[float] = []
    running = 0
    for b, ((begin, peak, finish), delta) in enumerate(zip(shapes, steps, strict=True)):
        start = t0 + b * MINUTE_NS
        peak_t = start + int(rng.uniform(30.0, 45.0) * SECOND)
        path = through(
            [
                (start, begin),
                (peak_t, peak),
                (peak_t + 1, peak - swing),
                (start + 58 * SECOND, finish),
            ]
        )
        lots = max(round(base * rng.uniform(1.0, 1.3)), abs(delta) + 8)
        lots += (lots - delta) % 2  # pushing - against = delta needs lots and delta of one parity
        pushing = (lots + delta) // 2
        against = lots - pushing
        orders.append(Order(peak_t, side, 1, path))
        sizes = split(rng, pushing - 1, order_count(ctx, pushing / lots))
        when = spread_times(rng, start + SECOND // 5, start + 58 * SECOND, len(sizes))
        orders += [Order(t, side, q, path) for t, q in zip(when, sizes, strict=True)]
        parts = split(rng, against, order_count(ctx, against / lots))
        when = spread_times(rng, start + SECOND // 5, start + 59 * SECOND, len(parts))
        orders += [
            Order(t, -side, q, path, ref_side=side) for t, q in zip(when, parts, strict=True)
        ]
        running += delta
        volumes.append(x.size(lots))
        cvd.append(swing * math.copysign(x.size(abs(running)), running))
    execute(ctx, orders)
    end = t0 + BARS * MINUTE_NS
    flow.run_until(end)
    flow.release()
    reversal = 2 * leg
    reversal_s = rng.uniform(60.0, 120.0)
    flow.impulse(-swing * reversal, reversal_s, -0.2 * swing)
    return ctx.label(
        "divergence",
        direction,
        t0,
        end,
        [p1, p2],
        {
            "bars": BARS,
            "first_extreme_bar": FIRST_HIGH_BAR,
            "second_extreme_bar": SECOND_HIGH_BAR,
            "volume_per_bar": volumes,
            "cvd_at_bar_close": cvd,
            "cvd_at_first_extreme": cvd[FIRST_HIGH_BAR - 1],
            "cvd_at_second_extreme": cvd[SECOND_HIGH_BAR - 1],
            "new_extreme_ticks": beyond,
            "min_price_new_extreme_ticks": params.min_price_new_extreme_ticks,
            "delta_failure_pct": params.delta_failure_pct,
            "lookback_bars": lookback,
            "reversal_ticks": reversal,
            "reversal_end_ns": end + int(reversal_s * SECOND),
        },
    )
