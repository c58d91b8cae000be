"""What every episode script shares: its context, scheduled orders along a price path, and the
helpers that keep the book consistent while a script prints its trades.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Final, TypeAlias

from ofcommon.instruments import Instrument
from ofcommon.simulator.book import BUY
from ofcommon.simulator.exchange import MINUTE_NS, SELL, Exchange
from ofcommon.simulator.flow import Flow
from ofcommon.simulator.labels import Label, LabelPattern, ParamValue
from ofcommon.simulator.profiles import SimProfile

__all__ = [
    "MINUTE_NS",
    "MS",
    "SECOND",
    "EpisodeContext",
    "Order",
    "Params",
    "Path",
    "execute",
    "linear",
    "lots_of",
    "order_count",
    "split",
    "spread_times",
    "through",
    "tighten",
]

MS: Final = 1_000_000
SECOND: Final = 1_000_000_000

Params: TypeAlias = dict[str, ParamValue]
Path: TypeAlias = Callable[[int], int]  # event time -> aggressor-touch tick wanted then


@dataclass
class EpisodeContext:
    x: Exchange
    flow: Flow
    inst: Instrument
    profile: SimProfile
    rng: Random
    seed: int

    def label(
        self,
        pattern: LabelPattern,
        direction: int,
        start_ns: int,
        end_ns: int,
        levels: list[int],
        params: Params,
    ) -> Label:
        x = self.x
        label = Label(
            label_id=x.next_label_id(pattern),
            instrument=x.symbol,
            pattern=pattern,
            direction=direction,
            start_ns=start_ns,
            end_ns=end_ns,
            price_levels=[x.price(t) for t in levels],
            params=params,
            seed=self.seed,
        )
        x.label(label)
        return label


@dataclass(order=True)
class Order:
    """A scripted market order: at ``t`` the touch an aggressor of ``ref_side`` (default: this
    order's side) hits is moved to ``path(t)`` if a path is given, then ``lots`` trade at this
    order's touch. ``refill_ms`` > 0 restores the hit level that long after."""

    t: int
    side: int = field(compare=False)
    lots: int = field(compare=False)
    path: Path | None = field(default=None, compare=False)
    refill_ms: float = field(default=0.0, compare=False)
    ref_side: int = field(default=0, compare=False)


def lots_of(volume: float, lot: float) -> int:
    """A volume in the venue's base unit as whole lots (rounded up: thresholds must be reached)."""
    return max(1, math.ceil(volume / lot - 1e-9))


def split(rng: Random, total: int, parts: int) -> list[int]:
    """``parts`` positive lot counts summing exactly to ``total`` (fewer if total is small)."""
    parts = max(1, min(parts, total))
    weights = [rng.expovariate(1.0) + 0.2 for _ in range(parts)]
    scale = (total - parts) / sum(weights)
    out = [1 + int(w * scale) for w in weights]
    out[rng.randrange(parts)] += total - sum(out)
    return out


def order_count(ctx: EpisodeContext, share: float) -> int:
    """How many market orders carry ``share`` of a bar's volume: the background's pace, so the
    tape keeps its rhythm when an episode starts and only sizes and sides give it away."""
    mean = ctx.profile.trade_rate * 60.0 * share
    return max(3, round(mean * ctx.rng.uniform(0.8, 1.2)))


def spread_times(rng: Random, start: int, end: int, count: int) -> list[int]:
    """``count`` sorted event times drawn uniformly in ``[start, end)``."""
    return sorted(start + int(rng.random() * (end - start)) for _ in range(count))


def linear(t0: int, tick0: int, t1: int, tick1: int) -> Path:
    """A straight path from ``tick0`` at ``t0`` to ``tick1`` at ``t1``, flat outside."""
    return through([(t0, tick0), (t1, tick1)])


def through(points: list[tuple[int, int]]) -> Path:
    """A path through (time, tick) points in time order, straight between them, flat outside.

    Between two points the tick is truncated towards the earlier one, so a point's tick is first
    reached at that point's time: a path touches its extreme only at the instant it lists.
    """

    def path(t: int) -> int:
        if t <= points[0][0]:
            return points[0][1]
        for (ta, ka), (tb, kb) in itertools.pairwise(points):
            if t < tb:
                return ka + int((kb - ka) * (t - ta) / (tb - ta))
        return points[-1][1]

    return path


def tighten(x: Exchange) -> None:
    """Close the spread to one tick before a script starts (makers step in on both sides)."""
    book = x.book
    side = BUY
    while book.ask - book.bid > 1:
        book.improve(side, book.far_size(0))
        side = -side
    x.flush()


def _move_touch(x: Exchange, side: int, target: int) -> None:
    """Shift the book until the touch an aggressor of ``side`` hits sits at ``target``."""
    book = x.book
    while book.touch(side) < target:
        book.shift(1)
    while book.touch(side) > target:
        book.shift(-1)


def execute(ctx: EpisodeContext, orders: list[Order]) -> list[tuple[int, int, int]]:
    """Run ``orders`` in time order under the background noise; (time, tick, lots) of each print.

    Before an order the aggressor touch is moved onto its path and, if the resting size could not
    absorb the order, topped up: both as a book delta published *before* the trade, so every print
    executes at a level the book showed.
    """
    x = ctx.x
    book = x.book
    flow = ctx.flow
    prints: list[tuple[int, int, int]] = []
    queue = sorted(orders)
    for i, order in enumerate(queue):
        next_t = queue[i + 1].t if i + 1 < len(queue) else order.t + SECOND
        flow.run_until(order.t)
        if order.path is not None:
            _move_touch(x, order.ref_side or order.side, order.path(order.t))
        passive = SELL if order.side == BUY else BUY
        resting = book.touch_lots(order.side)
        if resting <= order.lots:
            resting = order.lots + book.far_size(0)
            book.set_level(passive, 0, resting)
        x.flush()
        tick = book.touch(order.side)
        x.market(order.side, order.lots)
        prints.append((order.t, tick, order.lots))
        if order.refill_ms > 0:
            # The passive side refills the level it just lost: the footprint of absorption.
            flow.run_until(min(order.t + int(order.refill_ms * MS), next_t))
            if book.touch(order.side) == tick:
                book.set_level(passive, 0, max(resting, book.touch_lots(order.side)))
                x.flush()
    return prints
