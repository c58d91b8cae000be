"""Live book engine: validity (gap, seq jump, crossed, snapshot), stats, thin/walls, throttle,
consumption traded vs cancelled, refills; a dict-model property and the real Bybit XRP archive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings, strategies as st
from tests.support.binance_frames import bybit_archive_frames
from tests.support.real_data import BYBIT_XRP_OB500, require

from of_analytics.book import BookEngine, BookOutput, BookParams, Resolved, least_resistance
from of_feed_bybit.parser import BybitParser
from ofcommon.instruments import BybitVenue, Instrument, Registry, default_instruments
from ofcommon.messages import (
    BookDelta,
    BookSnapshot,
    BookStats,
    Consumption,
    Direction,
    Gap,
    Heartbeat,
    Level,
    Side,
    Trade,
)

MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def params(**kw: float) -> BookParams:
    base: dict[str, float] = {"row": 1.0, "rows": 3, "throttle_ns": 100 * MS}
    base.update(kw)
    return BookParams(
        row=base["row"],
        rows=int(base["rows"]),
        throttle_ns=int(base["throttle_ns"]),
        thin_fraction=base.get("thin_fraction", 0.25),
        wall_multiple=base.get("wall_multiple", 4.0),
        match_window_ns=int(base.get("match_window_ns", 1_000 * MS)),
    )


BIDS: list[Level] = [(99.0, 10.0), (98.0, 20.0), (97.0, 30.0), (96.0, 40.0)]
ASKS: list[Level] = [(101.0, 5.0), (102.0, 15.0), (103.0, 25.0), (104.0, 35.0)]


def snap(
    ts: int = T0, seq: int = 1, bids: list[Level] = BIDS, asks: list[Level] = ASKS
) -> BookSnapshot:
    return BookSnapshot(ts, ts, seq, list(bids), list(asks))


def delta(ts: int, seq: int, bids: Sequence[Level] = (), asks: Sequence[Level] = ()) -> BookDelta:
    return BookDelta(ts, ts, seq, list(bids), list(asks))


def trade(ts: int, price: float, size: float, side: Side, tid: str = "t") -> Trade:
    return Trade(ts, ts, price, size, side, tid)


def of(out: list[BookOutput], kind: type[BookStats]) -> list[BookOutput]:
    return [m for m in out if isinstance(m, kind)]


def cons(out: list[BookOutput]) -> list[Consumption]:
    """The consumption events of an engine's outputs, without their anchors."""
    return [m.consumption for m in out if isinstance(m, Resolved)]


def fresh(**kw: float) -> BookEngine:
    eng = BookEngine(params(**kw))
    out = eng.on_snapshot(snap())
    assert len(out) == 1
    assert isinstance(out[0], BookStats)
    assert out[0].valid
    return eng


# --- validity ----------------------------------------------------------------------------------


def test_deltas_before_any_snapshot_are_ignored() -> None:
    eng = BookEngine(params())
    assert eng.on_delta(delta(T0, 2, bids=[(99.0, 1.0)])) == []
    assert not eng.valid


def test_gap_invalidates_once_and_silences_until_a_snapshot() -> None:
    eng = fresh()
    out = eng.on_gap(Gap(T0 + MS, T0 + MS, "book", "reconnect"))
    assert out == [BookStats(ts_event=T0 + MS, valid=False)]
    assert eng.on_gap(Gap(T0 + 2 * MS, T0 + 2 * MS, "book", "again")) == []
    assert eng.on_delta(delta(T0 + 500 * MS, 2, bids=[(99.0, 1.0)])) == []
    assert eng.levels(Side.BUY) == []
    out = eng.on_snapshot(snap(T0 + 600 * MS, seq=50))
    assert len(out) == 1
    assert isinstance(out[0], BookStats)
    assert out[0].valid
    assert eng.seq == 50
    out = eng.on_delta(delta(T0 + 800 * MS, 51, bids=[(99.0, 11.0)]))
    assert eng.levels(Side.BUY)[0] == (99.0, 11.0)


def test_trades_gap_leaves_the_book_valid() -> None:
    eng = fresh()
    assert eng.on_gap(Gap(T0 + MS, T0 + MS, "trades", "backfill")) == []
    assert eng.valid


def test_seq_jump_invalidates() -> None:
    eng = fresh()
    out = eng.on_delta(delta(T0 + 200 * MS, 3, bids=[(99.0, 1.0)]))
    assert out == [BookStats(ts_event=T0 + 200 * MS, valid=False)]
    assert not eng.valid
    assert eng.on_delta(delta(T0 + 400 * MS, 4, bids=[(99.0, 1.0)])) == []


def test_crossing_delta_invalidates() -> None:
    eng = fresh()
    out = eng.on_delta(delta(T0 + 200 * MS, 2, bids=[(101.0, 3.0)]))
    assert of(out, BookStats) == [BookStats(ts_event=T0 + 200 * MS, valid=False)]
    assert not eng.valid


def test_locked_book_counts_as_crossed() -> None:
    eng = fresh()
    eng.on_delta(delta(T0 + 200 * MS, 2, asks=[(99.0, 3.0)]))
    assert not eng.valid


def test_crossed_snapshot_is_refused_and_announced_once() -> None:
    eng = BookEngine(params())
    out = eng.on_snapshot(snap(bids=[(102.0, 1.0)]))
    assert out == [BookStats(ts_event=T0, valid=False)]
    assert eng.on_snapshot(snap(T0 + MS, bids=[(102.0, 1.0)])) == []
    assert eng.on_snapshot(snap(T0 + 2 * MS))[0] == eng.stats(T0 + 2 * MS)
    assert eng.valid


def test_deleting_the_best_moves_the_top() -> None:
    eng = fresh()
    eng.on_delta(delta(T0 + 200 * MS, 2, bids=[(99.0, 0.0)], asks=[(101.0, 0.0)]))
    st_ = eng.stats(T0)
    assert (st_.best_bid, st_.best_ask, st_.spread) == (98.0, 102.0, 4.0)


# --- statistics --------------------------------------------------------------------------------


def test_stats_values_in_the_window() -> None:
    eng = fresh()
    s = eng.stats(T0)
    # mid 100, ±3 rows → bids ≥ 97, asks ≤ 103
    assert (s.best_bid, s.best_ask, s.spread) == (99.0, 101.0, 2.0)
    assert (s.bid_depth, s.ask_depth) == (60.0, 45.0)
    assert s.imbalance == pytest.approx(15 / 105)
    assert least_resistance(s) == Direction.NEUTRAL
    assert least_resistance(s, dead_band=0.1) == Direction.LONG


def test_thin_levels_and_walls() -> None:
    eng = BookEngine(params(rows=5))
    bids: list[Level] = [(99.0, 10.0), (98.0, 1.0), (97.0, 10.0), (96.0, 100.0)]
    asks: list[Level] = [(101.0, 10.0), (102.0, 10.0), (103.0, 2.0), (110.0, 500.0)]
    eng.on_snapshot(snap(bids=bids, asks=asks))
    s = eng.stats(T0)
    # window: 95..105, average = 153 / 7 ≈ 21.9 → thin < 5.46, wall > 87.4; 110 is outside
    assert s.thin_levels == [98.0, 103.0]
    assert s.walls == [(96.0, 100.0)]
    assert s.ask_depth == 22.0
    assert least_resistance(s) == Direction.LONG


def test_path_of_least_resistance_down_and_invalid() -> None:
    eng = BookEngine(params())
    eng.on_snapshot(snap(bids=[(99.0, 1.0)], asks=[(101.0, 50.0)]))
    assert least_resistance(eng.stats(T0)) == Direction.SHORT
    assert eng.stats(T0).least_resistance == Direction.SHORT  # published with the stats
    assert least_resistance(BookStats(ts_event=T0, valid=False)) == Direction.NEUTRAL


def test_throttle_by_event_time() -> None:
    eng = fresh()  # snapshot at T0 published
    published: list[int] = []
    for k in range(1, 21):  # a delta every 20 ms for 400 ms
        ts = T0 + 20 * k * MS
        out = eng.on_delta(delta(ts, 1 + k, bids=[(97.0, 30.0 + k)]))
        published += [m.ts_event for m in of(out, BookStats)]
    assert published == [T0 + 100 * MS, T0 + 200 * MS, T0 + 300 * MS, T0 + 400 * MS]


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="row"):
        BookParams(row=0.0)
    with pytest.raises(ValueError, match="rows"):
        BookParams(row=1.0, rows=0)


# --- consumption -------------------------------------------------------------------------------


def test_removal_split_into_traded_and_cancelled() -> None:
    eng = fresh()
    # sell aggressors hit the 99 bid for 6 (trade first), then the level drops 10 → 0
    assert eng.on_trade(trade(T0 + 10 * MS, 99.0, 6.0, Side.SELL)) == []
    assert eng.on_trade(trade(T0 + 10 * MS, 99.0, 50.0, Side.BUY)) == []  # wrong side
    out = eng.on_delta(delta(T0 + 20 * MS, 2, bids=[(99.0, 0.0)]))
    assert cons(out) == []  # waits for the matching window to close
    out = eng.advance(T0 + 1021 * MS)
    assert cons(out) == [
        Consumption(
            ts_event=T0 + 20 * MS,
            side=Side.SELL,
            price=99.0,
            removed=10.0,
            traded=6.0,
            cancelled=4.0,
        )
    ]


def test_trade_arriving_after_the_delta_still_matches() -> None:
    eng = fresh()
    eng.on_delta(delta(T0 + 20 * MS, 2, asks=[(101.0, 2.0)]))  # 5 → 2
    eng.on_trade(trade(T0 + 15 * MS, 101.0, 3.0, Side.BUY))  # older print, later on its stream
    out = eng.on_message(Heartbeat(T0 + 2_000 * MS, T0 + 2_000 * MS, "test"))
    assert cons(out) == [
        Consumption(
            ts_event=T0 + 20 * MS,
            side=Side.BUY,
            price=101.0,
            removed=3.0,
            traded=3.0,
            cancelled=0.0,
        )
    ]


def test_pure_cancel_and_trade_outside_window() -> None:
    eng = fresh()
    eng.on_trade(trade(T0 - 5_000 * MS, 98.0, 20.0, Side.SELL))  # too old
    eng.on_delta(delta(T0 + 20 * MS, 2, bids=[(98.0, 5.0)]))
    (c,) = cons(eng.flush())
    assert (c.removed, c.traded, c.cancelled, c.refilled) == (15.0, 0.0, 15.0, False)


def test_a_print_explains_only_one_removal() -> None:
    eng = fresh()
    eng.on_trade(trade(T0 + 5 * MS, 99.0, 4.0, Side.SELL))
    eng.on_delta(delta(T0 + 20 * MS, 2, bids=[(99.0, 6.0)]))
    eng.on_delta(delta(T0 + 40 * MS, 3, bids=[(99.0, 2.0)]))
    out = eng.flush()
    assert [(c.traded, c.cancelled) for c in cons(out)] == [
        (4.0, 0.0),
        (0.0, 4.0),
    ]


def test_a_print_after_a_cancel_explains_the_later_removal_not_the_cancel() -> None:
    # An ask of 5 is cancelled at 100 ms, re-posted at 500 ms and lifted by a buy of 5 at 600 ms:
    # the first removal is a cancel (then a re-post), the second the trade - not a fake iceberg.
    eng = fresh()
    eng.on_delta(delta(T0 + 100 * MS, 2, asks=[(101.0, 0.0)]))
    eng.on_delta(delta(T0 + 500 * MS, 3, asks=[(101.0, 5.0)]))
    eng.on_trade(trade(T0 + 600 * MS, 101.0, 5.0, Side.BUY))
    eng.on_delta(delta(T0 + 600 * MS, 4, asks=[(101.0, 0.0)]))
    got = [(c.ts_event, c.traded, c.cancelled) for c in cons(eng.advance(T0 + 3_000 * MS))]
    assert got == [(T0 + 100 * MS, 0.0, 5.0), (T0 + 600 * MS, 5.0, 0.0)]


def test_a_removal_takes_the_nearest_print_first() -> None:
    # Two buys of 3 at the 101 ask, 800 ms and 10 ms before a removal of 3: the near one is its
    # cause (a lift 800 ms earlier would have shrunk the ask then). The old print stays unused, and
    # is too old (1050 ms) for the removal at 1150 ms, which is therefore a cancel.
    eng = fresh()
    eng.on_trade(trade(T0 + 100 * MS, 101.0, 3.0, Side.BUY, "old"))
    eng.on_trade(trade(T0 + 890 * MS, 101.0, 3.0, Side.BUY, "near"))
    eng.on_delta(delta(T0 + 900 * MS, 2, asks=[(101.0, 2.0)]))  # 5 -> 2
    eng.on_delta(delta(T0 + 1_150 * MS, 3, asks=[(101.0, 0.0)]))  # 2 -> 0
    got = [(c.ts_event, c.traded, c.cancelled) for c in cons(eng.advance(T0 + 3_000 * MS))]
    assert got == [(T0 + 900 * MS, 3.0, 0.0), (T0 + 1_150 * MS, 0.0, 2.0)]


def test_a_print_within_the_lag_allowance_after_a_removal_explains_it() -> None:
    eng = fresh()
    lag = eng.params.print_lag_ns
    eng.on_delta(delta(T0 + 100 * MS, 2, asks=[(101.0, 0.0)]))  # 5 removed
    eng.on_trade(trade(T0 + 100 * MS + lag, 101.0, 2.0, Side.BUY, "in"))
    eng.on_trade(trade(T0 + 100 * MS + lag + 1, 101.0, 3.0, Side.BUY, "late"))
    (c,) = cons(eng.advance(T0 + 3_000 * MS))
    assert (c.traded, c.cancelled) == (2.0, 3.0)


def test_refill_at_the_same_price_flags_an_iceberg_hint() -> None:
    eng = fresh()
    eng.on_trade(trade(T0 + 10 * MS, 101.0, 5.0, Side.BUY))
    eng.on_delta(delta(T0 + 20 * MS, 2, asks=[(101.0, 0.0)]))
    eng.on_delta(delta(T0 + 60 * MS, 3, asks=[(101.0, 5.0)]))  # re-posted right away
    out = eng.advance(T0 + 1_100 * MS)
    assert cons(out) == [
        Consumption(
            ts_event=T0 + 20 * MS,
            side=Side.BUY,
            price=101.0,
            removed=5.0,
            traded=5.0,
            cancelled=0.0,
            refilled=True,
        )
    ]


def test_levels_outside_the_window_are_not_consumption() -> None:
    eng = fresh()
    eng.on_delta(delta(T0 + 20 * MS, 2, bids=[(96.0, 0.0)]))  # 96 < 100 - 3
    assert cons(eng.flush()) == []


def test_snapshot_infers_no_consumption() -> None:
    eng = fresh()
    eng.on_snapshot(snap(T0 + 20 * MS, seq=9, bids=[(99.0, 1.0)]))
    assert cons(eng.flush()) == []


# --- property: the book equals a naive dict replay ----------------------------------------------

_bid_prices = st.integers(min_value=90, max_value=99).map(float)
_ask_prices = st.integers(min_value=101, max_value=110).map(float)
_sizes = st.sampled_from([0.0, 0.0, 1.0, 2.5, 7.0, 100.0])
_changes = st.tuples(
    st.lists(st.tuples(_bid_prices, _sizes), max_size=6),
    st.lists(st.tuples(_ask_prices, _sizes), max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_changes, max_size=40))
def test_book_after_random_deltas_equals_a_dict_model(
    changes: list[tuple[list[Level], list[Level]]],
) -> None:
    eng = fresh()
    bids, asks = dict(BIDS), dict(ASKS)
    for k, (b, a) in enumerate(changes):
        eng.on_delta(delta(T0 + 20 * (k + 1) * MS, 2 + k, bids=b, asks=a))
        for side, lv in ((bids, b), (asks, a)):
            for p, s in lv:
                if s == 0:
                    side.pop(p, None)
                else:
                    side[p] = s
        assert eng.valid
        assert eng.levels(Side.BUY) == sorted(bids.items(), reverse=True)
        assert eng.levels(Side.SELL) == sorted(asks.items())
        s_ = eng.stats(0)
        if bids and asks:
            assert (s_.best_bid, s_.best_ask) == (max(bids), min(asks))
    for c in cons(eng.flush()):
        assert c.removed > 0
        assert c.traded == 0.0
        assert c.cancelled == c.removed


# --- real data: the Bybit XRPUSDT ob500 archive -------------------------------------------------


def xrp_registry() -> Registry:
    xrp = Instrument(
        symbol="XRPUSDT",
        group="crypto",
        tick_size=0.0001,
        row_size=0.001,
        session="FULL_DAY",
        bybit=BybitVenue(category="linear", symbol="XRPUSDT"),
    )
    return Registry([*default_instruments(), xrp])


def test_real_bybit_book_never_crosses_and_matches_raw_levels() -> None:
    raw = [json.loads(x) for x in require(BYBIT_XRP_OB500).read_text().splitlines() if x]
    parser = BybitParser("linear", xrp_registry(), depth=500, allow_retired_depth=True)
    eng = BookEngine(BookParams(row=0.0001, rows=20, throttle_ns=100 * MS))
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    stats = 0
    for (recv_ns, frame), msg in zip(bybit_archive_frames(), raw, strict=True):
        data = msg["data"]
        if msg["type"] == "snapshot":
            bids, asks = {}, {}
        for side, lv in ((bids, data["b"]), (asks, data["a"])):
            for p, s in lv:
                if float(s) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(s)
        for pub in parser.parse(recv_ns, frame):
            out = eng.on_message(pub.msg)
            stats += len(of(out, BookStats))
            assert all(m.valid for m in of(out, BookStats) if isinstance(m, BookStats))
        assert eng.valid
        assert eng.levels(Side.BUY) == sorted(bids.items(), reverse=True)
        assert eng.levels(Side.SELL) == sorted(asks.items())
        s_ = eng.stats(0)
        assert s_.best_bid < s_.best_ask
        assert s_.bid_depth > 0
        assert s_.ask_depth > 0
    assert stats >= 2
    for c in cons(eng.flush()):
        assert c.removed == pytest.approx(c.traded + c.cancelled)


_prints = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=400),
        st.sampled_from([97.0, 98.0, 99.0, 101.0, 102.0]),
        st.sampled_from([1.0, 3.0, 8.0]),
        st.sampled_from([Side.BUY, Side.SELL]),
    ),
    max_size=15,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_changes, max_size=15), _prints)
def test_stream_order_within_the_window_does_not_change_consumption(
    changes: list[tuple[list[Level], list[Level]]], prints: list[tuple[int, float, float, Side]]
) -> None:
    # Everything happens within 400 ms, inside the 1 s matching window: whether the trades stream
    # is read before or interleaved with the book stream, the split must be the same.
    deltas = [delta(T0 + 20 * (k + 1) * MS, 2 + k, b, a) for k, (b, a) in enumerate(changes)]
    trades = sorted(
        (trade(T0 + ms * MS, p, s, side, str(i)) for i, (ms, p, s, side) in enumerate(prints)),
        key=lambda t: t.ts_event,
    )
    first, merged = fresh(), fresh()
    for t in trades:
        first.on_trade(t)
    for d in deltas:
        first.on_delta(d)
    stream: list[BookDelta | Trade] = [*deltas, *trades]
    for m in sorted(stream, key=lambda m: m.ts_event):
        merged.on_message(m)
    a, b = cons(first.flush()), cons(merged.flush())
    assert a == b
    for c in a:
        assert c.traded + c.cancelled == pytest.approx(c.removed)
        assert 0 <= c.traded <= c.removed
    traded_total = sum(c.traded for c in a)
    assert traded_total <= sum(t.size for t in trades) + 1e-9


def test_an_instrument_without_a_book_keeps_only_a_minute_of_prints() -> None:
    eng = BookEngine(params())  # no snapshot, no book message at all: the book watermark is 0
    for i in range(6_000):  # ten minutes of event time, ten prints a second
        eng.on_trade(trade(T0 + i * 100 * MS, 100.0, 1.0, Side.BUY, str(i)))
    prints = eng.to_state().prints
    window = eng.params.max_skew_ns + eng.params.match_window_ns
    assert 0 < len(prints) <= window // (100 * MS) + 1
    assert prints[0].ts >= eng.trades_now - window
    assert eng.dropped_prints == 0  # pruned as useless, not dropped by the count cap
