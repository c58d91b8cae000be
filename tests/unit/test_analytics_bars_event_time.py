"""Bar open and close by event time (issue 8 §2.8): the earliest and the latest trade of the bar,
ties by arrival; an out-of-order print inside the bar never sets ``close``.
"""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from of_analytics.bars import BarBuilder
from ofcommon.messages import Bar, Heartbeat, Side, SizeKind, Trade

S = 1_000_000_000
MIN = 60 * S


def tr(ts: int, price: float, kind: SizeKind = SizeKind.REAL, tid: str = "") -> Trade:
    return Trade(ts, ts, price, 1.0, Side.BUY, tid or f"{ts}-{price}", size_kind=kind)


def _bars(builder: BarBuilder, trades: list[Trade], end: int) -> list[Bar]:
    state = builder.initial()
    out: list[Bar] = []
    for t in trades:
        out.extend(builder.step(state, t))
    out.extend(builder.step(state, Heartbeat(end, 0, "hb")))
    return out


def test_out_of_order_print_sets_neither_open_nor_close() -> None:
    b = BarBuilder(0.5, 0.5, composed=("5m",))
    arrivals = [tr(10 * S, 100.0), tr(30 * S, 105.0), tr(20 * S, 90.0), tr(5 * S, 99.0)]
    (bar, five) = _bars(b, arrivals, 5 * MIN)
    assert (bar.open, bar.high, bar.low, bar.close) == (99.0, 105.0, 90.0, 105.0)
    assert (five.open, five.close) == (99.0, 105.0)


def test_ties_by_arrival() -> None:
    b = BarBuilder(0.5, 0.5, composed=())
    arrivals = [tr(7 * S, 101.0), tr(7 * S, 102.0), tr(40 * S, 103.0), tr(40 * S, 104.0)]
    (bar,) = _bars(b, arrivals, MIN)
    # Same event time: the first to arrive opens, the last to arrive closes.
    assert (bar.open, bar.close) == (101.0, 104.0)


def test_quote_ticks_follow_the_same_rule() -> None:
    b = BarBuilder(0.5, 0.5, composed=())
    arrivals = [tr(30 * S, 2.0, SizeKind.TICKS), tr(10 * S, 1.0, SizeKind.TICKS)]
    (bar,) = _bars(b, arrivals, MIN)
    assert (bar.open, bar.close) == (1.0, 2.0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 59), st.integers(-20, 20)), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
)
def test_any_arrival_order_inside_a_bar(rows: list[tuple[int, int]], rnd: random.Random) -> None:
    trades = [tr(sec * S, 100.0 + px * 0.5, tid=str(i)) for i, (sec, px) in enumerate(rows)]
    rnd.shuffle(trades)
    # The reference: sort by event time, ties kept in arrival order (sorted() is stable).
    by_time = sorted(trades, key=lambda t: t.ts_event)
    (bar,) = _bars(BarBuilder(0.5, 0.5, composed=()), trades, MIN)
    assert bar.open == by_time[0].price
    assert bar.close == by_time[-1].price
    assert bar.high == max(t.price for t in trades)
    assert bar.low == min(t.price for t in trades)
