"""Footprint analytics and delta: imbalances per preset, stacked imbalances, unfinished auctions,
big trades, per-row and session-cumulative delta, on hand-made vectors and properties.
"""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings, strategies as st

from of_analytics.delta import CumulativeDelta, CvdState, delta_at_extremes, horizontal_delta
from of_analytics.footprint import (
    ATAS,
    DEFAULT,
    NINJATRADER,
    PRESETS,
    SEED,
    TRADINGVIEW,
    BigTradeParams,
    BigTrades,
    BigTradeState,
    ImbalanceParams,
    imbalances,
    stacked_imbalances,
    unfinished_auction,
)
from ofcommon.messages import Bar, FootprintRow, Side, SizeKind, Trade
from ofcommon.sessions import SESSIONS, bounds_for_date

S = 1_000_000_000


def fp(*cells: tuple[float, float, float]) -> list[FootprintRow]:
    """Rows of (price, bid, ask)."""
    return [FootprintRow(p, b, a, int(b > 0) + int(a > 0)) for p, b, a in cells]


def bar(rows: list[FootprintRow], open_ts: int = 0, final: bool = True) -> Bar:
    buy = sum(r.ask_volume for r in rows)
    sell = sum(r.bid_volume for r in rows)
    prices = [r.price for r in rows] or [0.0]
    return Bar(
        "1m", open_ts, open_ts + 60 * S, prices[0], max(prices), min(prices), prices[-1],
        buy + sell, buy, sell, buy - sell, 0.0, 0.0, len(rows), prices[0], prices[0], rows, final,
    )  # fmt: skip


def sides(found: list[object]) -> list[tuple[float, Side]]:
    return [(i.price, i.side) for i in found]  # type: ignore[attr-defined]


def test_presets() -> None:
    assert DEFAULT.ratio == 3.0
    assert DEFAULT.mode == "diagonal"
    assert ATAS.ratio == NINJATRADER.ratio == 1.5
    assert TRADINGVIEW.ratio == 3.0
    assert set(PRESETS) == {"default", "atas", "ninjatrader", "tradingview", "seed"}


def test_diagonal_imbalance_vector() -> None:
    # NinjaTrader's example: 1000 bought at p against 300 sold one row below.
    rows = fp((100.0, 300.0, 50.0), (101.0, 20.0, 1000.0), (102.0, 10.0, 25.0))
    assert sides(imbalances(rows, 1.0, NINJATRADER)) == [(101.0, Side.BUY)]
    # 1000 / 300 = 3.33 ≥ 3: also under the default; 300 sold at 100 vs 1000 bought at 101: no.
    assert sides(imbalances(rows, 1.0)) == [(101.0, Side.BUY)]
    assert sides(imbalances(rows, 1.0, ImbalanceParams(ratio=3.5))) == []
    # The mirror: 400 sold at 101 against 100 bought at 102.
    rows = fp((100.0, 0.0, 5.0), (101.0, 400.0, 5.0), (102.0, 1.0, 100.0))
    assert sides(imbalances(rows, 1.0)) == [(101.0, Side.SELL)]


def test_diagonal_needs_the_opposite_row_inside_the_bar() -> None:
    rows = fp((100.0, 0.0, 9.0), (101.0, 0.0, 9.0))
    # Lowest row: no row below inside the bar; row 101 vs an empty bid at 100 (zero policy).
    assert imbalances(rows, 1.0) == []
    counted = imbalances(rows, 1.0, ImbalanceParams(zero_policy="count"))
    assert sides(counted) == [(101.0, Side.BUY)]
    assert imbalances(rows, 1.0, ImbalanceParams(zero_policy="count", min_volume=10.0)) == []


def test_empty_rows_inside_the_bar_count_as_zero() -> None:
    rows = fp((100.0, 5.0, 0.0), (102.0, 0.0, 7.0))
    # Row 101 traded nothing but lies inside the bar: both diagonals meet a zero there.
    assert imbalances(rows, 1.0) == []
    got = imbalances(rows, 1.0, ImbalanceParams(zero_policy="count"))
    assert sides(got) == [(100.0, Side.SELL), (102.0, Side.BUY)]


def test_min_volume() -> None:
    rows = fp((100.0, 1.0, 0.0), (101.0, 0.0, 2.0))
    assert imbalances(rows, 1.0) == []  # 2 vs 1 is not 3x
    rows = fp((100.0, 1.0, 0.0), (101.0, 0.0, 3.0))
    assert sides(imbalances(rows, 1.0)) == [(101.0, Side.BUY)]
    assert imbalances(rows, 1.0, ImbalanceParams(min_volume=5.0)) == []


def test_horizontal_and_seed_mode() -> None:
    rows = fp((100.0, 1.0, 3.0), (101.0, 0.0, 1.0), (102.0, 6.0, 2.0), (103.0, 2.0, 2.0))
    horizontal = ImbalanceParams(mode="horizontal")
    assert sides(imbalances(rows, 1.0, horizontal)) == [(100.0, Side.BUY), (102.0, Side.SELL)]
    # Seed §6: a one-sided 1-lot row counts too.
    assert sides(imbalances(rows, 1.0, SEED)) == [
        (100.0, Side.BUY),
        (101.0, Side.BUY),
        (102.0, Side.SELL),
    ]


def test_stacked_imbalances() -> None:
    rows = fp(
        (100.0, 1.0, 0.0),
        (100.5, 1.0, 5.0),
        (101.0, 1.0, 5.0),
        (101.5, 1.0, 5.0),
        (102.0, 9.0, 1.0),  # breaks the run
        (102.5, 1.0, 30.0),
    )
    found = imbalances(rows, 0.5)
    assert [p for p, s in sides(found) if s is Side.BUY] == [100.5, 101.0, 101.5, 102.5]
    (st_,) = stacked_imbalances(found, 0.5)
    assert (st_.side, st_.low, st_.high, st_.rows) == (Side.BUY, 100.5, 101.5, 3)
    assert stacked_imbalances(found, 0.5, min_rows=4) == []


def test_unfinished_auction() -> None:
    b = bar(fp((100.0, 2.0, 1.0), (101.0, 0.0, 4.0), (102.0, 1.0, 3.0)))
    assert unfinished_auction(b) == (True, True)
    b = bar(fp((100.0, 2.0, 0.0), (102.0, 0.0, 3.0)))
    assert unfinished_auction(b) == (False, False)
    b = bar(fp((100.0, 2.0, 1.0), (102.0, 1.0, 3.0)))
    assert unfinished_auction(b, ask_filter=3.0) == (False, True)


def test_big_trades_fixed_and_auto() -> None:
    fixed = BigTrades(BigTradeParams(fixed=10.0))
    state = BigTradeState()

    def t(size: float, kind: SizeKind = SizeKind.REAL) -> Trade:
        return Trade(0, 0, 1.0, size, Side.BUY, "x", size_kind=kind)

    assert [fixed.on_trade(state, t(x)) for x in (9.9, 10.0, 50.0)] == [False, True, True]
    assert not fixed.on_trade(state, t(50.0, SizeKind.TICKS))
    auto = BigTrades(BigTradeParams(percentile=90.0, window=10, refresh=1, min_samples=10))
    state = BigTradeState()
    flags = [auto.on_trade(state, t(float(x))) for x in range(1, 11)]
    assert not any(flags)  # no threshold before min_samples
    assert auto.threshold(state) == 9.0  # nearest rank 9 of 1..10
    assert auto.on_trade(state, t(9.0))
    assert not auto.on_trade(state, t(8.0))
    assert len(state.sizes) == 10


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 50), st.integers(0, 50)),
        min_size=1,
        max_size=30,
        unique_by=lambda c: c[0],
    ),
    st.sampled_from(list(PRESETS.values())),
)
def test_imbalance_definition(cells: list[tuple[int, int, int]], params: ImbalanceParams) -> None:
    rows = fp(*sorted((100.0 + k * 0.25, float(b), float(a)) for k, b, a in cells))
    by = {round(r.price / 0.25): r for r in rows}
    lo, hi = min(by), max(by)
    for imb in imbalances(rows, 0.25, params):
        k = round(imb.price / 0.25)
        assert imb.dominant > 0
        assert imb.dominant >= params.min_volume
        if imb.opposite:
            assert imb.dominant >= params.ratio * imb.opposite
        else:
            assert params.zero_policy == "count"
        if params.mode == "diagonal":
            assert (lo < k) if imb.side is Side.BUY else (k < hi)
    for s in stacked_imbalances(imbalances(rows, 0.25, params), 0.25):
        assert s.rows >= 3
        assert s.high > s.low


# --- delta -----------------------------------------------------------------------------------


def test_seed_delta_vector() -> None:
    """Seed §20 vector 2: buy 140 / sell 60 -> 80, cumulative 80, delta_pct 0.40."""
    rows = fp((18500.0, 60.0, 140.0))
    b = bar(rows, open_ts=bounds_for_date(SESSIONS["FULL_DAY"], date(2024, 3, 5))[0])
    stats = CumulativeDelta(SESSIONS["FULL_DAY"]).on_bar(CvdState(), b)
    assert stats is not None
    assert (stats.delta, stats.session_cvd, stats.cvd) == (80.0, 80.0, 80.0)
    assert stats.delta_pct == 0.4


def test_horizontal_and_extremes() -> None:
    b = bar(fp((100.0, 5.0, 1.0), (101.0, 2.0, 2.0), (102.0, 1.0, 4.0)))
    assert horizontal_delta(b) == [(100.0, -4.0), (101.0, 0.0), (102.0, 3.0)]
    assert delta_at_extremes(b) == (3.0, -4.0)
    assert delta_at_extremes(bar([])) == (0.0, 0.0)


def test_session_cvd_resets_and_continuous_does_not() -> None:
    spec = SESSIONS["NY_CASH"]
    s1, e1 = bounds_for_date(spec, date(2024, 3, 5))
    s2, _ = bounds_for_date(spec, date(2024, 3, 6))
    cd = CumulativeDelta(spec)
    state = CvdState()
    up = fp((100.0, 0.0, 10.0))
    down = fp((100.0, 3.0, 0.0))
    got = []
    for ts, rows in ((s1, up), (s1 + 60 * S, up), (e1 + 3600 * S, down), (s2, down)):
        stats = cd.on_bar(state, bar(rows, open_ts=ts))
        assert stats is not None
        got.append((stats.session_start, stats.session_cvd, stats.cvd))
    # After the close a bar adds to the continuous CVD only; the session one restarts at the open.
    assert got == [(s1, 10.0, 10.0), (s1, 20.0, 20.0), (s1, 20.0, 17.0), (s2, -3.0, 14.0)]
    assert cd.on_bar(state, bar(up, open_ts=s2)) is None  # already counted
    assert cd.on_bar(state, bar(up, open_ts=s2 + 60 * S, final=False)) is None
