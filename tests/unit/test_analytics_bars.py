"""Bars and footprints of the analytics fold: golden vectors, event-time closing, the late-trade
rule, hypothesis properties (conservation, composition, batching) and the real Binance trades.
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from tests.support.binance_frames import binance_lines
from tests.support.real_data import BINANCE_SPOT, require

from of_analytics.bars import TIMEFRAMES, BarBuilder, BarsState
from ofcommon.instruments import Registry, default_instruments
from ofcommon.messages import Bar, Gap, Heartbeat, Side, SizeKind, Trade

S = 1_000_000_000
MIN = 60 * S


def tr(
    ts: int,
    price: float,
    size: float,
    side: Side = Side.BUY,
    kind: SizeKind = SizeKind.REAL,
) -> Trade:
    return Trade(ts, ts, price, size, side, str(ts), size_kind=kind)


def run(builder: BarBuilder, msgs: list[Trade | Heartbeat | Gap]) -> tuple[list[Bar], BarsState]:
    state = builder.initial()
    out: list[Bar] = []
    for m in msgs:
        out.extend(builder.step(state, m))
    return out, state


def test_seed_candle_vector() -> None:
    """Seed §20 vector 7: 10 buys of 5 at 18500.0 + i·0.1, then sells in the next minute."""
    b = BarBuilder(0.1, 0.1, composed=())
    msgs: list[Trade | Heartbeat | Gap] = [
        tr(60 * S + i * S, 18500.0 + i * 0.1, 5.0) for i in range(10)
    ]
    msgs += [tr(120 * S + i * S, 18500.5, 1.0, Side.SELL) for i in range(5)]
    out, _ = run(b, msgs)
    assert len(out) == 1
    bar = out[0]
    assert (bar.open, bar.high, bar.low, bar.close) == (18500.0, 18500.9, 18500.0, 18500.9)
    assert (bar.volume, bar.delta, bar.trades, len(bar.footprint)) == (50.0, 50.0, 10, 10)
    assert (bar.open_ts, bar.close_ts, bar.final, bar.rev) == (60 * S, 120 * S, True, 1)
    assert [r.price for r in bar.footprint] == [round(18500.0 + i * 0.1, 1) for i in range(10)]
    assert (bar.delta_min, bar.delta_max) == (5.0, 50.0)


def test_golden_bar_with_rows() -> None:
    # Row 1.0 over tick 0.25: prices floor to their row; POC tie goes to the row nearest the middle.
    b = BarBuilder(0.25, 1.0, composed=())
    msgs: list[Trade | Heartbeat | Gap] = [
        tr(0, 100.0, 2.0, Side.BUY),
        tr(1 * S, 100.75, 1.0, Side.SELL),  # row 100
        tr(2 * S, 101.25, 3.0, Side.SELL),  # row 101
        tr(3 * S, 102.0, 3.0, Side.BUY),  # row 102
        tr(4 * S, 101.0, 1.0, Side.BUY),
        Heartbeat(MIN, MIN, "feed"),
    ]
    out, state = run(b, msgs)
    (bar,) = out
    assert [(r.price, r.bid_volume, r.ask_volume, r.trades) for r in bar.footprint] == [
        (100.0, 1.0, 2.0, 2),
        (101.0, 3.0, 1.0, 2),
        (102.0, 0.0, 3.0, 1),
    ]
    assert bar.poc == 101.0  # 101 holds 4, 100 and 102 hold 3
    assert (bar.buy_volume, bar.sell_volume, bar.delta) == (6.0, 4.0, 2.0)
    # running delta: +2, +1, -2, +1, +2
    assert (bar.delta_min, bar.delta_max) == (-2.0, 2.0)
    assert bar.vwap == pytest.approx((200 + 100.75 + 303.75 + 306 + 101) / 10)
    assert state.base is None


def test_poc_tie_goes_to_the_middle_then_lower() -> None:
    b = BarBuilder(1.0, 1.0, composed=())
    rows = [(100.0, 2.0), (101.0, 1.0), (102.0, 2.0), (103.0, 1.0)]
    out, _ = run(b, [*(tr(i, p, v) for i, (p, v) in enumerate(rows)), Heartbeat(MIN, 0, "f")])
    assert out[0].poc == 102.0  # middle 101.5: 102 is nearer than 100
    rows = [(100.0, 2.0), (101.0, 1.0), (102.0, 2.0)]
    out, _ = run(b, [*(tr(i, p, v) for i, (p, v) in enumerate(rows)), Heartbeat(MIN, 0, "f")])
    assert out[0].poc == 100.0  # equidistant from 101: the lower


def test_row_mapping_is_robust_to_float_error() -> None:
    b = BarBuilder(0.00001, 0.0005)
    assert b.row_of(1.1005) == b.row_of(1.10049999999) == 2201
    assert b.row_of(1.10099) == 2201
    assert b.row_price(2201) == 1.1005
    for inst in default_instruments():
        bi = BarBuilder.for_instrument(inst)
        for k in (1, 7, 12345):
            p = bi.row_price(k)
            assert bi.row_of(p) == k
            assert bi.row_of(p + inst.tick_size * (inst.footprint.row_ticks - 1)) == k


def test_bar_closes_on_heartbeat_exactly_once() -> None:
    b = BarBuilder(0.5, 0.5, composed=("5m",))
    state = b.initial()
    assert b.step(state, tr(10 * S, 10.0, 1.0)) == []
    assert b.step(state, Heartbeat(MIN - 1, 0, "f")) == []
    (bar,) = b.step(state, Heartbeat(MIN, 0, "f"))
    assert bar.final
    assert bar.timeframe == "1m"
    assert b.step(state, Heartbeat(MIN + S, 0, "f")) == []
    closed = b.step(state, Heartbeat(5 * MIN, 0, "f"))
    assert [(x.timeframe, x.open_ts) for x in closed] == [("5m", 0)]
    assert b.step(state, Heartbeat(10 * MIN, 0, "f")) == []


def test_late_trade_is_counted_not_folded() -> None:
    b = BarBuilder(0.5, 0.5, composed=())
    state = b.initial()
    b.step(state, tr(MIN + S, 10.0, 1.0))
    assert b.step(state, tr(MIN - S, 11.0, 2.0)) == []  # older than the open bar
    assert (state.late_trades, state.late_volume) == (1, 2.0)
    (bar,) = b.step(state, Heartbeat(2 * MIN, 0, "f"))
    assert bar.volume == 1.0
    assert bar.high == 10.0
    # With no bar open, anything before the last closed bar's end is late too.
    assert b.step(state, tr(2 * MIN - 1, 9.0, 1.0)) == []
    # A heartbeat passes its minute's start: an older minute can no longer open.
    b.step(state, Heartbeat(4 * MIN + S, 0, "f"))
    assert b.step(state, tr(3 * MIN + S, 9.0, 1.0)) == []
    assert state.late_trades == 3
    assert b.step(state, tr(4 * MIN + 2 * S, 9.0, 1.0)) == []
    assert state.base is not None
    assert state.base.open_ts == 4 * MIN


def test_tick_volume_is_never_real_volume() -> None:
    b = BarBuilder(0.00001, 0.0005, composed=())
    msgs: list[Trade | Heartbeat | Gap] = [
        tr(0, 1.1, 1.0, Side.SELL, SizeKind.TICKS),
        tr(S, 1.1002, 1.0, Side.SELL, SizeKind.TICKS),
        tr(2 * S, 1.1001, 3.0, Side.BUY),
        Heartbeat(MIN, 0, "f"),
    ]
    out, _ = run(b, msgs)
    (bar,) = out
    assert (bar.open, bar.high, bar.low, bar.close) == (1.1, 1.1002, 1.1, 1.1001)
    assert (bar.volume, bar.trades, bar.sell_volume, bar.delta) == (3.0, 1, 0.0, 3.0)
    assert sum(r.ask_volume + r.bid_volume for r in bar.footprint) == 3.0


def test_gap_marks_the_bar() -> None:
    b = BarBuilder(0.5, 0.5, composed=())
    state = b.initial()
    b.step(state, Gap(0, 0, "book", "x"))
    assert state.gaps == 0
    b.step(state, Gap(0, 0, "trades", "seq jump"))
    b.step(state, tr(MIN + 1, 1.0, 1.0))
    b.step(state, Gap(MIN + 2, 0, "trades", "again"))
    assert state.gapped == [MIN]
    assert state.gaps == 2
    partial = b.partial(state)
    assert partial is not None
    assert partial.gapped
    (closed,) = b.step(state, tr(2 * MIN, 1.0, 1.0))
    assert closed.final
    assert closed.gapped
    after = b.partial(state)
    assert after is not None
    assert not after.gapped


def test_partial_snapshots() -> None:
    b = BarBuilder(0.5, 0.5, composed=("5m",))
    state = b.initial()
    assert b.partial(state) is None
    b.on_trades(state, [tr(S, 10.0, 1.0), tr(MIN + S, 11.0, 2.0, Side.SELL)])
    p1 = b.partial(state)
    assert p1 is not None
    assert not p1.final
    assert p1.rev == 0
    assert p1.volume == 2.0
    p5 = b.partial(state, "5m")
    assert p5 is not None
    assert (p5.volume, p5.delta, p5.open, p5.close) == (3.0, -1.0, 10.0, 11.0)
    assert (p5.open_ts, p5.close_ts) == (0, 5 * MIN)
    # Partials do not change state: the closed bars are the same with or without them.
    assert state.composed["5m"].volume == 1.0


# --- properties ------------------------------------------------------------------------------

# Prices on a 0.5 grid, sizes on a 0.25 grid: binary-exact, so sums do not depend on the order.
trade_st = st.builds(
    lambda dt, px, sz, buy: (dt, 100.0 + px * 0.5, sz * 0.25, Side.BUY if buy else Side.SELL),
    st.integers(0, 150 * S),
    st.integers(-40, 40),
    st.integers(1, 400),
    st.booleans(),
)
trades_st = st.lists(trade_st, min_size=1, max_size=120).map(
    lambda rows: [tr(t, p, s, side) for t, p, s, side in sorted(rows, key=lambda r: r[0])]
)


def _finals(builder: BarBuilder, trades: list[Trade], end: int) -> list[Bar]:
    out, _ = run(builder, [*trades, Heartbeat(end, 0, "f")])
    return out


@settings(max_examples=150, deadline=None)
@given(trades_st)
def test_conservation(trades: list[Trade]) -> None:
    bars = _finals(BarBuilder(0.5, 1.0, composed=()), trades, 10**6 * MIN)
    assert sum(b.trades for b in bars) == len(trades)
    assert sum(b.volume for b in bars) == sum(t.size for t in trades)
    for bar in bars:
        fp_vol = sum(r.bid_volume + r.ask_volume for r in bar.footprint)
        assert fp_vol == bar.volume == bar.buy_volume + bar.sell_volume
        assert sum(r.trades for r in bar.footprint) == bar.trades
        assert sum(r.bid_volume for r in bar.footprint) == bar.sell_volume
        assert bar.low <= bar.vwap <= bar.high
        assert bar.delta_min <= bar.delta <= bar.delta_max
        assert any(r.price == bar.poc for r in bar.footprint)


@settings(max_examples=150, deadline=None)
@given(trades_st, st.sampled_from(["5m", "15m", "1h"]))
def test_composed_equals_direct(trades: list[Trade], tf: str) -> None:
    composed = [
        b
        for b in _finals(BarBuilder(0.5, 1.0, composed=(tf,)), trades, 10**6 * MIN)
        if b.timeframe == tf
    ]
    direct = _finals(BarBuilder(0.5, 1.0, base=tf, composed=()), trades, 10**6 * MIN)
    assert composed == direct


@settings(max_examples=100, deadline=None)
@given(trades_st, st.data())
def test_independent_of_batching_and_checkpoints(trades: list[Trade], data: st.DataObject) -> None:
    """Heartbeats that do not move time forward, partial snapshots, and checkpoint + restore of
    the state at any points leave the closed bars unchanged."""
    b = BarBuilder(0.5, 1.0, composed=("5m", "1h"))
    reference = _finals(b, trades, 10**6 * MIN)
    cuts = data.draw(st.sets(st.integers(0, len(trades))))
    state = b.initial()
    out: list[Bar] = []
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(BarsState)
    for i, t in enumerate(trades):
        if i in cuts:
            b.partial(state, "5m")
            out.extend(b.step(state, Heartbeat(trades[i - 1].ts_event if i else 0, 0, "f")))
            state = dec.decode(enc.encode(state))
        out.extend(b.step(state, t))
    out.extend(b.step(state, Heartbeat(10**6 * MIN, 0, "f")))
    assert out == reference


# --- real data -------------------------------------------------------------------------------


def _binance_trades() -> list[Trade]:
    out = []
    for _, obj in binance_lines(require(BINANCE_SPOT)):
        d = obj.get("data", obj)
        if d.get("e") != "trade":
            continue
        ts = int(d["T"]) * 1_000_000
        side = Side.SELL if d["m"] else Side.BUY  # buyer is maker -> the seller was the aggressor
        out.append(Trade(ts, ts, float(d["p"]), float(d["q"]), side, str(d["t"])))
    return out


def test_real_binance_bars_match_straightforward_aggregation() -> None:
    trades = _binance_trades()
    assert len(trades) > 1000
    # Binance spot trades on a 0.01 grid: the engines follow the tick the Instrument carries.
    inst = msgspec.structs.replace(Registry(default_instruments()).get("BTCUSDT"), tick_size=0.01)
    b = BarBuilder.for_instrument(inst, composed=("5m",))
    state = b.initial()
    bars: list[Bar] = []
    late = 0
    for t in trades:
        before = state.late_trades
        bars.extend(b.on_trade(state, t))
        late += state.late_trades - before
    bars.extend(b.advance(state, trades[-1].ts_event + 2 * TIMEFRAMES["1D"]))
    # Independent aggregation with Decimal on the exchange's own strings' grid.
    tick = Decimal("0.01")
    row = inst.footprint.row_ticks * tick  # the footprint row, not the profile's
    groups: dict[int, list[Trade]] = defaultdict(list)
    last_open = -1
    for t in trades:
        start = t.ts_event // MIN * MIN
        if start < last_open:
            continue  # the late rule: older than the open minute
        last_open = start
        groups[start].append(t)
    assert late == len(trades) - sum(map(len, groups.values()))
    one = [x for x in bars if x.timeframe == "1m"]
    assert [x.open_ts for x in one] == sorted(groups)
    for bar in one:
        g = groups[bar.open_ts]
        assert bar.trades == len(g)
        assert bar.open == g[0].price
        assert bar.close == g[-1].price
        assert bar.high == max(t.price for t in g)
        assert bar.low == min(t.price for t in g)
        assert math.isclose(bar.volume, sum(t.size for t in g), rel_tol=1e-9)
        buy = sum(t.size for t in g if t.side is Side.BUY)
        assert math.isclose(bar.buy_volume, buy, rel_tol=1e-9, abs_tol=1e-9)
        cells: dict[Decimal, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for t in g:
            p = Decimal(str(t.price)).quantize(tick)
            key = (p // row) * row
            cells[key][0 if t.side is Side.SELL else 1] += t.size
            cells[key][2] += 1
        assert [Decimal(str(r.price)) for r in bar.footprint] == sorted(cells)
        for r in bar.footprint:
            c = cells[Decimal(str(r.price))]
            assert math.isclose(r.bid_volume, c[0], rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(r.ask_volume, c[1], rel_tol=1e-9, abs_tol=1e-12)
            assert r.trades == c[2]
    five = [x for x in bars if x.timeframe == "5m"]
    assert math.isclose(sum(x.volume for x in five), sum(x.volume for x in one), rel_tol=1e-9)
