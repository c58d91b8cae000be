"""The footprint analytics every published bar carries (wire version 2): delta at the extremes,
session / continuous CVD, imbalances, stacked runs, unfinished auctions and big trades.

Expected values are worked out by hand in each test from the rows the trades build.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import msgspec
from hypothesis import given, settings, strategies as st

from of_analytics.bars import BarBuilder, BarsState
from of_analytics.footprint import ATAS, PRESETS, BigTradeParams, BigTrades, BigTradeState
from ofcommon import codec
from ofcommon.instruments import ImbalancePreset, Registry, default_instruments, load_registry
from ofcommon.messages import (
    Bar,
    BigPrint,
    Heartbeat,
    ImbalanceRow,
    Side,
    SizeKind,
    StackedRun,
    Trade,
)

S = 1_000_000_000
MIN = 60 * S
BUY, SELL = Side.BUY, Side.SELL


def tr(ts: int, price: float, size: float, side: Side, kind: SizeKind = SizeKind.REAL) -> Trade:
    return Trade(ts, ts, price, size, side, str(ts), size_kind=kind)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


def finals(builder: BarBuilder, trades: list[Trade], end: int) -> list[Bar]:
    state = builder.initial()
    out = builder.on_trades(state, trades)
    out.extend(builder.advance(state, end))
    return out


def one_bar(trades: list[Trade], builder: BarBuilder | None = None) -> Bar:
    b = builder or BarBuilder(1.0, 1.0, composed=())
    (bar,) = finals(b, trades, 10 * MIN)
    return bar


# Rows (bid, ask) at 100: (1, 2), 101: (0, 9), 102: (3, 1), 103: (2, 5).
MIXED = [
    tr(0, 100.0, 2.0, BUY),
    tr(1, 100.0, 1.0, SELL),
    tr(2, 103.0, 5.0, BUY),
    tr(3, 103.0, 2.0, SELL),
    tr(4, 101.0, 9.0, BUY),
    tr(5, 102.0, 3.0, SELL),
    tr(6, 102.0, 1.0, BUY),
]


def test_delta_at_extremes_and_unfinished_auction() -> None:
    bar = one_bar(MIXED)
    assert (bar.high, bar.low) == (103.0, 100.0)
    assert (bar.delta_at_high, bar.delta_at_low) == (5.0 - 2.0, 2.0 - 1.0)
    # Both sides traded at the top row and at the bottom row.
    assert (bar.unfinished_high, bar.unfinished_low) == (True, True)


def test_diagonal_imbalances_default_and_atas_ratio() -> None:
    # Buy at p: ask(p) / bid(p-1); sell at p: bid(p) / ask(p+1). At 3.0 only 101 qualifies
    # (9 / 1); 102's buy side faces an empty bid below (skipped), 103 has 5 / 3 < 3.
    assert one_bar(MIXED).imbalances == [ImbalanceRow(101.0, BUY, 9.0)]
    # ATAS "150 %" = 1.5x: 103's 5 / 3 = 1.67 now counts too.
    atas = one_bar(MIXED, BarBuilder(1.0, 1.0, composed=(), imbalance=ATAS))
    assert atas.imbalances == [ImbalanceRow(101.0, BUY, 9.0), ImbalanceRow(103.0, BUY, 5.0 / 3.0)]
    assert atas.stacked == []


def test_stacked_buy_run_and_finished_extremes() -> None:
    # Rows (bid, ask): 100 (1, 0), 101 (1, 3), 102 (1, 4), 103 (2, 6), 104 (0, 6).
    # Buys: 101 3/1, 102 4/1, 103 6/1, 104 6/2 -> four consecutive rows. No sell: every bid is
    # smaller than three times the ask above it.
    rows = [(100.0, 1.0, 0.0), (101.0, 1.0, 3.0), (102.0, 1.0, 4.0), (103.0, 2.0, 6.0)]
    rows.append((104.0, 0.0, 6.0))
    trades: list[Trade] = []
    for price, bid, ask in rows:
        if bid:
            trades.append(tr(len(trades), price, bid, SELL))
        if ask:
            trades.append(tr(len(trades), price, ask, BUY))
    bar = one_bar(trades)
    assert bar.imbalances == [
        ImbalanceRow(101.0, BUY, 3.0),
        ImbalanceRow(102.0, BUY, 4.0),
        ImbalanceRow(103.0, BUY, 6.0),
        ImbalanceRow(104.0, BUY, 3.0),
    ]
    assert bar.stacked == [StackedRun(BUY, 101.0, 104.0, 4)]
    # Top row has no bid, bottom row no ask: both auctions finished.
    assert (bar.unfinished_high, bar.unfinished_low) == (False, False)
    assert (bar.delta_at_high, bar.delta_at_low) == (6.0, -1.0)


def test_stacked_sell_run_of_exactly_three_rows_on_a_coarser_row() -> None:
    # Tick 0.5, rows of 2.0: 200 and 201.5 share row 200. Rows (bid, ask): 200 (6, 0),
    # 202 (3, 2), 204 (3, 1), 206 (0, 1). Sells: 200 6/2, 202 3/1, 204 3/1 = 3.0 each.
    trades = [
        tr(0, 200.0, 4.0, SELL),
        tr(1, 201.5, 2.0, SELL),
        tr(2, 202.0, 3.0, SELL),
        tr(3, 203.0, 2.0, BUY),
        tr(4, 204.0, 3.0, SELL),
        tr(5, 204.5, 1.0, BUY),
        tr(6, 206.0, 1.0, BUY),
    ]
    bar = one_bar(trades, BarBuilder(0.5, 2.0, composed=()))
    assert [r.price for r in bar.footprint] == [200.0, 202.0, 204.0, 206.0]
    assert bar.imbalances == [
        ImbalanceRow(200.0, SELL, 3.0),
        ImbalanceRow(202.0, SELL, 3.0),
        ImbalanceRow(204.0, SELL, 3.0),
    ]
    assert bar.stacked == [StackedRun(SELL, 200.0, 204.0, 3)]
    assert (bar.delta_at_high, bar.delta_at_low) == (1.0, -6.0)


def test_session_cvd_resets_at_the_utc_day_and_total_does_not() -> None:
    # Without a session the builder uses FULL_DAY: the UTC day.
    b = BarBuilder(1.0, 1.0, composed=())
    d = utc("2024-08-07T23:58:00")
    trades = [
        tr(d, 100.0, 5.0, BUY),  # 23:58 delta +5
        tr(d + MIN, 100.0, 2.0, SELL),  # 23:59 delta -2
        tr(d + 2 * MIN, 100.0, 1.0, BUY),  # 00:00 next day, delta +1
        tr(d + 3 * MIN, 100.0, 4.0, SELL),  # 00:01 delta -4
    ]
    state = b.initial()
    out = b.on_trades(state, trades[:3])
    assert [(x.cvd, x.cvd_total) for x in out] == [(5.0, 5.0), (3.0, 3.0)]
    partial = b.partial(state)
    assert partial is not None
    assert (partial.cvd, partial.cvd_total) == (1.0, 4.0)  # the new session's first bar
    out = b.on_trades(state, trades[3:]) + b.advance(state, d + 10 * MIN)
    assert [(x.cvd, x.cvd_total) for x in out] == [(1.0, 4.0), (-3.0, 0.0)]
    assert (state.cvd.session_cvd, state.cvd.cvd) == (-3.0, 0.0)


def test_cvd_follows_the_instruments_session() -> None:
    # SP500 trades the NY cash session, 13:30-20:00 UTC in August (EDT). Out-of-hours bars add to
    # the continuous CVD only; the session CVD resets at the open and holds through the night.
    inst = Registry(default_instruments()).get("SP500")
    b = BarBuilder.for_instrument(inst, composed=())
    trades = [
        tr(utc("2024-08-07T12:00:00"), 5000.0, 2.0, BUY),
        tr(utc("2024-08-07T14:00:00"), 5000.0, 1.0, SELL),
        tr(utc("2024-08-07T21:00:00"), 5000.0, 4.0, BUY),
        tr(utc("2024-08-08T13:45:00"), 5000.0, 3.0, SELL),
    ]
    bars = finals(b, trades, utc("2024-08-09T00:00:00"))
    assert [(x.cvd, x.cvd_total) for x in bars] == [
        (0.0, 2.0),
        (-1.0, 1.0),
        (-1.0, 5.0),
        (-3.0, 2.0),
    ]


def test_big_trades_fixed_size() -> None:
    b = BarBuilder(1.0, 1.0, composed=(), big_trades=BigTradeParams(fixed=10.0))
    trades = [
        tr(0, 100.0, 9.5, BUY),
        tr(1, 101.0, 10.0, BUY),
        tr(2, 99.0, 12.0, SELL),
        tr(3, 99.0, 50.0, BUY, SizeKind.TICKS),  # a tick count is never a print
    ]
    bar = one_bar(trades, b)
    assert bar.big_trades == [BigPrint(1, 101.0, 10.0, BUY), BigPrint(2, 99.0, 12.0, SELL)]


def test_big_trades_rolling_percentile_and_composed_concatenation() -> None:
    # Median (nearest rank 2 of 4) of the last 4 sizes, recomputed every trade, from 4 sizes on.
    params = BigTradeParams(percentile=50.0, window=4, refresh=1, min_samples=4)
    b = BarBuilder(1.0, 1.0, composed=("5m",), big_trades=params)
    sizes = [1.0, 2.0, 3.0, 4.0, 2.0, 1.5, 3.0]
    trades = [tr(i * 30 * S, 100.0, s, BUY) for i, s in enumerate(sizes)]
    bars = finals(b, trades, 10 * MIN)
    # Trades 0-3 see no threshold. After 1,2,3,4 it is 2: trade 4 (2.0) is big; window 2,2,3,4
    # keeps it at 2: trade 5 (1.5) is not; window 2,1.5,3,4 -> sorted 1.5,2,3,4 -> 2: trade 6 is.
    one = {x.open_ts: x.big_trades for x in bars if x.timeframe == "1m"}
    assert one == {
        0: [],
        MIN: [],
        2 * MIN: [BigPrint(120 * S, 100.0, 2.0, BUY)],
        3 * MIN: [BigPrint(180 * S, 100.0, 3.0, BUY)],
    }
    (five,) = [x for x in bars if x.timeframe == "5m"]
    assert five.big_trades == [
        BigPrint(120 * S, 100.0, 2.0, BUY),
        BigPrint(180 * S, 100.0, 3.0, BUY),
    ]


def test_composed_bar_analytics_come_from_the_merged_footprint() -> None:
    b = BarBuilder(1.0, 1.0, composed=("5m",))
    trades = [tr(0, 100.0, 1.0, SELL), tr(MIN, 101.0, 3.0, BUY)]
    bars = finals(b, trades, 10 * MIN)
    ones = [x for x in bars if x.timeframe == "1m"]
    # Alone, neither one-row minute has an imbalance (no neighbouring row).
    assert [x.imbalances for x in ones] == [[], []]
    assert [(x.cvd, x.cvd_total) for x in ones] == [(-1.0, -1.0), (2.0, 2.0)]
    (five,) = [x for x in bars if x.timeframe == "5m"]
    # Merged rows 100 (bid 1) and 101 (ask 3): buy imbalance 3 / 1 at 101.
    assert five.imbalances == [ImbalanceRow(101.0, BUY, 3.0)]
    assert (five.delta_at_high, five.delta_at_low) == (3.0, -1.0)
    assert (five.unfinished_high, five.unfinished_low) == (False, False)
    assert (five.cvd, five.cvd_total) == (2.0, 2.0)  # as of its last 1m bar


def test_partial_composed_bar_includes_the_open_minute() -> None:
    b = BarBuilder(1.0, 1.0, composed=("5m",))
    state = b.initial()
    b.on_trades(state, [tr(0, 100.0, 1.0, SELL), tr(MIN, 101.0, 3.0, BUY)])
    five = b.partial(state, "5m")
    assert five is not None
    assert five.imbalances == [ImbalanceRow(101.0, BUY, 3.0)]
    assert (five.cvd, five.cvd_total, five.final) == (2.0, 2.0, False)


def test_bar_with_analytics_round_trips_on_the_wire() -> None:
    bar = one_bar(MIXED, BarBuilder(1.0, 1.0, composed=(), big_trades=BigTradeParams(fixed=5.0)))
    assert bar.big_trades == [BigPrint(2, 103.0, 5.0, BUY), BigPrint(4, 101.0, 9.0, BUY)]
    assert codec.decode(codec.encode(bar)) == bar


def test_version_1_bar_decodes_with_empty_analytics() -> None:
    bar = one_bar(MIXED)
    v1 = msgspec.msgpack.decode(codec.encode(bar))[:20]  # tag + the 19 version-1 fields
    old = codec.decode(msgspec.msgpack.encode(v1))
    assert isinstance(old, Bar)
    assert old == msgspec.structs.replace(
        bar,
        delta_at_high=0.0,
        delta_at_low=0.0,
        cvd=0.0,
        cvd_total=0.0,
        imbalances=[],
        stacked=[],
        unfinished_high=False,
        unfinished_low=False,
        big_trades=[],
    )


# --- properties ------------------------------------------------------------------------------

trade_st = st.tuples(
    st.integers(0, 20 * MIN),
    st.integers(180, 220).map(lambda t: t * 0.5),
    st.integers(1, 40).map(float),
    st.sampled_from([BUY, SELL]),
)
trades_st = st.lists(trade_st, min_size=1, max_size=150).map(
    lambda rows: [tr(t, p, s, side) for t, p, s, side in sorted(rows, key=lambda r: r[0])]
)
SMALL_BIG = BigTradeParams(percentile=80.0, window=8, refresh=3, min_samples=5)


def _builder() -> BarBuilder:
    return BarBuilder(0.5, 1.0, composed=("5m", "15m"), big_trades=SMALL_BIG)


@settings(max_examples=100, deadline=None)
@given(trades_st, st.data())
def test_fields_do_not_depend_on_message_split_or_checkpoints(
    trades: list[Trade], data: st.DataObject
) -> None:
    reference = finals(_builder(), trades, 10**4 * MIN)
    b = _builder()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(trades)))) | {len(trades)})
    state = b.initial()
    out: list[Bar] = []
    start = 0
    dec = msgspec.msgpack.Decoder(BarsState)
    for cut in cuts:
        out.extend(b.on_trades(state, trades[start:cut]))
        b.partial(state, "15m")
        state = dec.decode(msgspec.msgpack.encode(state))
        start = cut
    out.extend(b.advance(state, 10**4 * MIN))
    assert out == reference


@settings(max_examples=100, deadline=None)
@given(trades_st, st.sampled_from(["5m", "15m"]))
def test_composed_analytics_equal_bars_built_directly(trades: list[Trade], tf: str) -> None:
    composed = [x for x in finals(_builder(), trades, 10**4 * MIN) if x.timeframe == tf]
    direct = finals(
        BarBuilder(0.5, 1.0, base=tf, composed=(), big_trades=SMALL_BIG), trades, 10**4 * MIN
    )
    assert composed == direct


@settings(max_examples=100, deadline=None)
@given(trades_st)
def test_cvd_is_the_running_sum_of_bar_deltas(trades: list[Trade]) -> None:
    # All trades fall on one UTC day, so session and continuous CVD agree; sizes are whole
    # numbers, so the float sums are exact.
    ones = [x for x in finals(_builder(), trades, 10**4 * MIN) if x.timeframe == "1m"]
    running = 0.0
    for bar in ones:
        running += bar.delta
        assert bar.cvd == bar.cvd_total == running
        top, bottom = bar.footprint[-1], bar.footprint[0]
        assert bar.delta_at_high == top.ask_volume - top.bid_volume
        assert bar.delta_at_low == bottom.ask_volume - bottom.bid_volume
    assert running == sum(t.size if t.side is BUY else -t.size for t in trades)


def test_heartbeat_closes_bar_with_its_analytics() -> None:
    b = BarBuilder(1.0, 1.0, composed=())
    state = b.initial()
    b.on_trades(state, MIXED)
    (bar,) = b.step(state, Heartbeat(MIN, MIN, "feed"))
    assert bar.final
    assert bar.imbalances == [ImbalanceRow(101.0, BUY, 9.0)]
    assert (bar.cvd, bar.cvd_total) == (17.0 - 6.0, 11.0)  # buys 2+5+9+1, sells 1+2+3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1000).map(float), min_size=1, max_size=60), st.integers(1, 100))
def test_big_trade_threshold_is_the_nearest_rank_percentile(sizes: list[float], q: int) -> None:
    n = len(sizes)
    big = BigTrades(BigTradeParams(percentile=float(q), window=n, refresh=1, min_samples=n))
    state = BigTradeState()
    for i, size in enumerate(sizes):
        big.on_trade(state, tr(i, 100.0, size, BUY))
    rank = max(1, -(-q * n // 100))  # ceil(q / 100 * n) in integers
    assert big.threshold(state) == sorted(sizes)[rank - 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 50).map(float), min_size=1, max_size=80),
    st.integers(1, 12),
    st.integers(1, 7),
    st.data(),
)
def test_big_trades_follow_the_rolling_window_model(
    sizes: list[float], window: int, refresh: int, data: st.DataObject
) -> None:
    """Reference model: the threshold is recomputed after trade j (1-based) when j = min_samples
    + k·refresh, over the last ``window`` sizes; trade i is big if its size reaches the threshold
    of the last recompute before it."""
    min_samples = data.draw(st.integers(1, window))
    q = data.draw(st.integers(1, 100))
    params = BigTradeParams(
        percentile=float(q), window=window, refresh=refresh, min_samples=min_samples
    )
    big = BigTrades(params)
    state = BigTradeState()
    got = [big.on_trade(state, tr(i, 100.0, s, BUY)) for i, s in enumerate(sizes)]
    expected = []
    threshold = float("inf")
    for j, size in enumerate(sizes, start=1):
        expected.append(size >= threshold)
        if j >= min_samples and (j - min_samples) % refresh == 0:
            last = sorted(sizes[max(0, j - window) : j])
            threshold = last[max(1, -(-q * len(last) // 100)) - 1]
    assert got == expected


def test_registry_footprint_table_sets_the_bar_builders_parameters(tmp_path: Path) -> None:
    path = tmp_path / "instruments.toml"
    path.write_text(
        "[instruments.BTCUSDT.footprint]\n"
        'imbalance_preset = "atas"\n'
        "imbalance_min_volume = 2.0\n"
        "stacked_rows = 4\n"
        "big_trade_size = 5.0\n"
    )
    inst = load_registry(path).get("BTCUSDT")
    builder = BarBuilder.for_instrument(inst)
    state = builder.initial()
    t0 = 1_700_000_040 * 1_000_000_000
    # 5.0 at the ask one row above 2.5 at the bid: 2x, an imbalance for ATAS (1.5x, and above its
    # minimum volume of 2) but not for the default 3x
    sizes = [(5.0, Side.BUY, 100.0 + inst.footprint_row), (2.5, Side.SELL, 100.0)]
    for i, (size, side, price) in enumerate(sizes):
        builder.on_trade(state, Trade(t0 + i, t0 + i, price, size, side, f"r{i}"))
    bar = builder.partial(state)
    assert bar is not None
    assert [(b.size, b.side) for b in bar.big_trades] == [(5.0, Side.BUY)]  # fixed size 5
    assert [(x.price, x.side) for x in bar.imbalances] == [(100.0 + inst.footprint_row, Side.BUY)]
    default = BarBuilder.for_instrument(load_registry().get("BTCUSDT"))
    dstate = default.initial()
    for i, (size, side, price) in enumerate(sizes):
        default.on_trade(dstate, Trade(t0 + i, t0 + i, price, size, side, f"r{i}"))
    dbar = default.partial(dstate)
    assert dbar is not None
    assert dbar.imbalances == []  # 2x is below the default 3x
    assert dbar.big_trades == []  # auto: too few samples for a percentile yet


def test_every_registry_preset_name_is_a_footprint_preset() -> None:
    assert set(get_args(ImbalancePreset)) == set(PRESETS)
