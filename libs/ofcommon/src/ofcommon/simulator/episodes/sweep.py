"""Sweep: resting size is pulled from several levels, then one burst of aggression takes them all
within milliseconds; the book refills behind it.
"""

from __future__ import annotations

from ofcommon.simulator.book import BUY
from ofcommon.simulator.episodes.common import (
    MS,
    SECOND,
    EpisodeContext,
    lots_of,
    tighten,
)
from ofcommon.simulator.exchange import SELL
from ofcommon.simulator.labels import Label

__all__ = ["run"]


def run(ctx: EpisodeContext, t0: int, direction: int) -> Label:
    """``direction`` is the sweep's side: 1 takes the asks upwards, -1 the bids downwards.

    From ``t0`` the first ``min_levels_swept`` + 0-2 levels are thinned, one cancellation at a
    time over 0.4-2.5 s, to 30-85 % of min(thin threshold, max volume per level). Then 1-3 market
    orders 0-150 ms apart consume exactly those levels (the last may also nibble at the next one).
    """
    x, flow, rng, inst = ctx.x, ctx.flow, ctx.rng, ctx.inst
    params = inst.sweep
    lot = ctx.profile.lot
    book = x.book
    side = BUY if direction > 0 else SELL
    passive = -side
    flow.run_until(t0)
    flow.script()
    tighten(x)
    count = params.min_levels_swept + rng.randint(0, 2)
    cap = min(params.thin_book_threshold, params.max_volume_per_level)
    sizes = [lots_of(cap * rng.uniform(0.3, 0.85), lot) for _ in range(count)]
    first = book.touch(side)
    ticks = [first + direction * i for i in range(count)]
    before = [x.size(book.asks[i] if side == BUY else book.bids[i]) for i in range(count)]
    flow.protected.update(ticks)
    thin_s = rng.uniform(0.4, 2.5)
    for i in rng.sample(range(count), count):
        flow.run_until(x.now + int(thin_s / count * rng.uniform(0.5, 1.0) * SECOND))
        book.set_level(passive, i, sizes[i])
        x.flush()
    # The burst: levels dealt to 1-3 child orders a few milliseconds apart.
    children = min(count, rng.randint(1, 3))
    cuts = sorted(rng.sample(range(1, count), children - 1))
    groups = [sizes[a:b] for a, b in zip([0, *cuts], [*cuts, count], strict=True)]
    spacing_ms = max(0, min(150, params.max_time_ms // (2 * children)))
    t = x.now + rng.randint(50, 300) * MS
    start = t
    traded = 0
    for n, group in enumerate(groups):
        flow.run_until(t)
        lots = sum(group)
        if n == len(groups) - 1 and rng.random() < 0.5:
            # The last child may nibble at the level behind the swept ones, never emptying it.
            behind = (book.asks if side == BUY else book.bids)[len(group)]
            if behind > 1:
                lots += rng.randint(1, max(1, (behind - 1) // 4))
        traded += sum(q for _, q in x.market(side, lots))
        t += rng.randint(0, spacing_ms) * MS
    end = x.now
    flow.release()
    # The sweep's aggressors keep most of their gain: the fair value stays near the new touch.
    flow.fair = book.touch(side) - direction * (0.5 + rng.uniform(0.0, count / 3))
    return ctx.label(
        "sweep",
        direction,
        start,
        end,
        [ticks[0], ticks[-1]],
        {
            "levels_swept": count,
            "volume_per_level": [x.size(q) for q in sizes],
            "total_volume": x.size(sum(sizes)),
            "extra_volume": x.size(traded - sum(sizes)) if traded > sum(sizes) else 0.0,
            "resting_before_thinning": before,
            "thinning_start_ns": t0,
            "duration_ms": (end - start) / MS,
            "min_levels_swept": params.min_levels_swept,
            "max_volume_per_level": params.max_volume_per_level,
            "max_time_ms": params.max_time_ms,
            "thin_book_threshold": params.thin_book_threshold,
        },
    )
