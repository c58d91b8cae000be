"""Golden vectors at the edges of named definitions: the path of least resistance at exactly ±0.15
(seed §20, kept), thin levels and walls at their strict cuts, and a composed bar's delta extremes.
"""

from __future__ import annotations

import pytest

from of_analytics.bars import BarBuilder
from of_analytics.book import BookEngine, BookParams, least_resistance
from ofcommon.messages import Bar, BookSnapshot, Direction, Heartbeat, Level, Side, Trade

S = 1_000_000_000
MIN = 60 * S
T0 = 1_700_000_100 * S  # a whole five minutes


def book(bids: list[Level], asks: list[Level]) -> BookEngine:
    """A book around mid 100 whose statistics window is 97..103 (3 rows of 1.0)."""
    eng = BookEngine(BookParams(row=1.0, rows=3))
    eng.on_snapshot(BookSnapshot(T0, T0, 1, bids, asks))
    assert eng.valid
    return eng


@pytest.mark.parametrize(
    ("bid", "ask", "direction"),
    [
        (115.0, 85.0, Direction.NEUTRAL),  # imbalance exactly +0.15: strict, so neutral
        (85.0, 115.0, Direction.NEUTRAL),  # exactly -0.15
        (116.0, 84.0, Direction.LONG),  # +0.16: fewer asks to trade through above
        (84.0, 116.0, Direction.SHORT),
    ],
)
def test_path_of_least_resistance_at_the_dead_band(
    bid: float, ask: float, direction: Direction
) -> None:
    s = book([(99.0, bid)], [(101.0, ask)]).stats(T0)
    assert s.imbalance == pytest.approx((bid - ask) / 200)
    assert least_resistance(s) is direction


def test_thin_levels_and_walls_at_their_cuts() -> None:
    # Window depth 48 over 6 levels: average 8, thin below 2.0, wall above 32.
    eng = book(
        [(99.0, 2.0), (98.0, 10.0), (97.0, 12.0)], [(101.0, 1.5), (102.0, 8.5), (103.0, 14.0)]
    )
    s = eng.stats(T0)
    assert (s.bid_depth, s.ask_depth, s.imbalance) == (24.0, 24.0, 0.0)
    assert s.thin_levels == [101.0]  # 2.0 sits exactly on the cut: not thin
    assert s.walls == []
    # Five levels of 1 and one of 10: average 2.5, so 10 is exactly 4x the average: no wall.
    flat: list[Level] = [(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)]
    s = book(flat, [(101.0, 1.0), (102.0, 1.0), (103.0, 10.0)]).stats(T0)
    assert s.walls == []
    s = book(flat, [(101.0, 1.0), (102.0, 1.0), (103.0, 10.5)]).stats(T0)
    assert s.walls == [(103.0, 10.5)]
    # A level outside the window counts for nothing, however large.
    s = book([*flat, (96.0, 1000.0)], [(101.0, 1.0), (102.0, 1.0), (103.0, 10.5)]).stats(T0)
    assert s.walls == [(103.0, 10.5)]
    assert s.bid_depth == 3.0


def trade(ts: int, price: float, size: float, side: Side) -> Trade:
    return Trade(ts, ts, price, size, side, str(ts))


def test_composed_bar_delta_extremes_span_its_minutes() -> None:
    """Running delta 5, -3 in minute one and -7, 3 in minute two: the 5-minute bar's extremes are
    those of the whole run (-7, 5), not of either minute alone."""
    b = BarBuilder(0.5, 1.0, composed=("5m",))
    state = b.initial()
    out: list[Bar] = []
    ticks = [
        trade(T0 + 1 * S, 100.0, 5.0, Side.BUY),
        trade(T0 + 2 * S, 99.5, 8.0, Side.SELL),
        trade(T0 + MIN + 1 * S, 99.0, 4.0, Side.SELL),
        trade(T0 + MIN + 2 * S, 101.0, 10.0, Side.BUY),
    ]
    for t in ticks:
        out += b.step(state, t)
    out += b.step(state, Heartbeat(T0 + 10 * MIN, 0, "f"))
    one = [x for x in out if x.timeframe == "1m"]
    assert [(x.delta, x.delta_min, x.delta_max) for x in one] == [
        (-3.0, -3.0, 5.0),
        (6.0, -4.0, 6.0),
    ]
    (five,) = [x for x in out if x.timeframe == "5m"]
    assert (five.open_ts, five.close_ts) == (T0, T0 + 5 * MIN)
    assert (five.delta, five.delta_min, five.delta_max) == (3.0, -7.0, 5.0)
    assert (five.open, five.high, five.low, five.close) == (100.0, 101.0, 99.0, 101.0)
    assert (five.volume, five.buy_volume, five.sell_volume, five.trades) == (27.0, 15.0, 12.0, 4)
    assert five.vwap == pytest.approx((500.0 + 796.0 + 396.0 + 1010.0) / 27.0)
    # Rows of 1.0: 99 holds 8 + 4 = 12 (99.5 floors to 99), the most: the POC.
    assert [(r.price, r.bid_volume, r.ask_volume, r.trades) for r in five.footprint] == [
        (99.0, 12.0, 0.0, 2),
        (100.0, 0.0, 5.0, 1),
        (101.0, 0.0, 10.0, 1),
    ]
    assert five.poc == 99.0
