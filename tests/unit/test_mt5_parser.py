"""The MT5 frame parser: frames in, messages out, the same live and in replay; bad input is
refused precisely (a bad frame) or skipped and kept for the dead-letter stream (a bad tick)."""

from __future__ import annotations

import itertools
import random

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from tests.support import fake_mt5

from of_feed_mt5 import frames
from of_feed_mt5.parser import Mt5Parser, make_parser, tick_snapper
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    BookSnapshot,
    Heartbeat,
    InstrumentSpec,
    Quote,
    Side,
    SizeKind,
    Trade,
)
from ofcommon.venue import BadFrame

REGISTRY = load_registry()
T = 1_723_161_255_000  # server ms
SELL, BUY = fake_mt5.BOOK_TYPE_SELL, fake_mt5.BOOK_TYPE_BUY


def ticks_frame(
    rows: list[tuple[object, ...]],
    *,
    backfill: bool = False,
    inst: str = "BTCUSDT",
    side_rule: str = "tick_rule",
) -> bytes:
    return frames.ticks_frame(inst, inst, "+180", rows, backfill=backfill, side_rule=side_rule)


def trade_rows(n: int, *, start: int = T, same_ms: int = 3) -> list[tuple[object, ...]]:
    rng = random.Random(n)
    rows: list[tuple[object, ...]] = []
    price, bid = 60_000.0, 59_999.99
    for i in range(n):
        msc = start + i // same_ms
        if i % 4 == 0:
            bid = round(bid + rng.choice((-0.01, 0.01)), 2)
            rows.append((msc // 1000, bid, round(bid + 0.01, 2), price, 0, msc, 6, 0.0))
        else:
            price = round(price + rng.choice((-0.01, 0.0, 0.01)), 2)
            flags = 0x18 | rng.choice((0, 0x20, 0x40, 0x60))
            rows.append((msc // 1000, bid, round(bid + 0.01, 2), price, 1, msc, flags, 0.25))
    return rows


def parse_all(parser: Mt5Parser, chunks: list[bytes]) -> list[object]:
    return [p for c in chunks for p in parser.parse(77, c)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 199), max_size=10))
def test_frame_boundaries_do_not_change_the_output(cuts: list[int]) -> None:
    """Replay may cut a recording differently than live polls did: same messages anyway."""
    rows = trade_rows(200)
    edges = [0, *sorted(set(cuts)), len(rows)]
    chunks = [ticks_frame(rows[a:b]) for a, b in itertools.pairwise(edges) if b > a]
    assert parse_all(Mt5Parser(REGISTRY), chunks) == parse_all(
        Mt5Parser(REGISTRY), [ticks_frame(rows)]
    )


def test_trades_have_unique_stable_ids_and_converted_times() -> None:
    rows = trade_rows(60)
    out = Mt5Parser(REGISTRY).parse(5, ticks_frame(rows))
    trades = [p.msg for p in out if isinstance(p.msg, Trade)]
    assert len({t.trade_id for t in trades}) == len(trades)
    first = trades[0]
    msc, _n = (int(x) for x in first.trade_id.split("."))
    assert first.ts_event == (msc - 180 * 60_000) * 1_000_000
    assert first.ts_recv == 5
    assert all(t.size == 0.25 and t.size_kind is SizeKind.REAL for t in trades)


def test_backfill_frames_flag_trades_and_publish_no_quotes() -> None:
    out = Mt5Parser(REGISTRY).parse(5, ticks_frame(trade_rows(40), backfill=True))
    assert out
    assert not any(isinstance(p.msg, Quote) for p in out)
    assert all(isinstance(p.msg, Trade) and p.msg.backfill for p in out)


def test_a_bad_tick_is_rejected_alone_as_a_one_tick_frame() -> None:
    rows = trade_rows(8)
    rows[3] = (T // 1000, float("nan"), 1.0, 2.0, 0, T, 0x18, 1.0)  # NaN: JSON null
    rows[5] = (T // 1000, 0.0, 0.0, 0.0, 0, T + 1, 6, 0.0)  # no price at all
    parser = Mt5Parser(REGISTRY)
    # the quote rule classifies every good trade here (the tick rule needs a prior price change)
    good = parser.parse(1, ticks_frame(rows, side_rule="lee_ready"))
    assert len([p for p in good if isinstance(p.msg, Trade)]) >= 4
    rejected = parser.take_rejected()
    assert [r.reason.split(":")[0] for r in rejected] == ["malformed tick", "no price"]
    assert parser.rejected == []
    assert parser.counts["rejected"] == 2
    again = msgspec.json.decode(rejected[0].frame)
    assert again["type"] == "ticks"
    assert len(again["ticks"]) == 1
    assert again["ticks"][0][1] is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"not json", "malformed mt5 frame"),
        (b'{"type":"quotes","instrument":"EURUSD"}', "malformed mt5 frame"),
        (b'{"type":"ticks","instrument":"NOPE","clock":"+0","ticks":[]}', "unknown instrument"),
        (b'{"type":"ticks","instrument":"EURUSD","clock":"Mars","ticks":[]}', "server clock"),
        (b'{"type":"ticks","instrument":"EURUSD","clock":"+0"}', "malformed mt5 frame"),
        (
            b'{"type":"ticks","instrument":"EURUSD","clock":"+0","ticks":[],"side_rule":"x"}',
            "side_rule",
        ),
        (
            b'{"type":"book","instrument":"EURUSD","ts_event":1,"levels":[[1,-5.0,1,1.0]]}',
            "bad DOM entry",
        ),
    ],
)
def test_bad_frames_raise_with_the_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(BadFrame, match=reason):
        Mt5Parser(REGISTRY).parse(0, frame)


def book(ts: int, *levels: tuple[int, float, float]) -> bytes:
    rows = [tuple(b) for b in fake_mt5.book(*levels)]
    return frames.encode(
        frames.BookFrame(instrument="XAUUSDT", symbol="XAUUSD", ts_event=ts, levels=rows, depth=10)
    )


def test_dom_is_published_sorted_and_only_when_it_changed() -> None:
    parser = Mt5Parser(REGISTRY)
    first = book(1, (SELL, 2400.12, 3), (SELL, 2400.5, 1.5), (BUY, 2399.9, 2), (BUY, 2400.0, 1))
    out = parser.parse(10, first)
    snap = out[0].msg
    assert isinstance(snap, BookSnapshot)
    assert out[0].kind == "book"
    assert snap.asks == [(2400.12, 3.0), (2400.5, 1.5)]  # best (lowest) first
    assert snap.bids == [(2400.0, 1.0), (2399.9, 2.0)]  # best (highest) first
    assert (snap.ts_event, snap.ts_recv, snap.seq, snap.depth) == (1, 10, 1, 10)
    assert (
        parser.parse(
            11, book(2, (BUY, 2400.0, 1), (BUY, 2399.9, 2), (SELL, 2400.5, 1.5), (SELL, 2400.12, 3))
        )
        == []
    )
    changed = parser.parse(12, book(3, (SELL, 2400.12, 2.5), (BUY, 2400.0, 1)))
    assert isinstance(changed[0].msg, BookSnapshot)
    assert changed[0].msg.seq == 2


def test_dom_uses_volume_dbl_market_types_and_ignores_unknown_types() -> None:
    raw = frames.BookFrame(
        instrument="XAUUSDT",
        ts_event=1,
        levels=[
            (1, 10.0, 0, 0.3),
            (3, 10.5, 2, 2.0),
            (2, 9.5, 1, 1.25),
            (4, 9.0, 1, 0.5),
            (9, 1.0, 1, 1.0),
        ],
    )
    snap = Mt5Parser(REGISTRY).parse(0, frames.encode(raw))[0].msg
    assert isinstance(snap, BookSnapshot)
    assert snap.asks == [(10.0, 0.3), (10.5, 2.0)]
    assert snap.bids == [(9.5, 1.25), (9.0, 0.5)]


def test_m1_bars_become_four_backfill_prints_keeping_ohlc_and_volume() -> None:
    bars = [
        (1_700_000_040, 2400.0, 2401.0, 2399.5, 2400.75, 40, 12, 0),  # up bar: O L H C
        (1_700_000_100, 2400.75, 2401.25, 2398.0, 2398.5, 20, 12, 7),  # down bar, real volume
    ]
    frame = frames.BarsFrame(instrument="XAUUSDT", symbol="XAUUSD", clock="+120", bars=bars)
    out = Mt5Parser(REGISTRY).parse(0, frames.encode(frame))
    trades = [p.msg for p in out if isinstance(p.msg, Trade)]
    assert len(trades) == len(out) == 8
    assert all(t.backfill for t in trades)
    up, down = trades[:4], trades[4:]
    assert [t.price for t in up] == [2400.0, 2399.5, 2401.0, 2400.75]
    assert [t.price for t in down] == [2400.75, 2401.25, 2398.0, 2398.5]
    assert sum(t.size for t in up) == 40
    assert {t.size_kind for t in up} == {SizeKind.TICKS}
    assert {t.size_kind for t in down} == {SizeKind.REAL}
    open_ns = (1_700_000_040 - 7200) * 10**9
    assert all(open_ns <= t.ts_event < open_ns + 60 * 10**9 for t in up)
    assert [t.side for t in up] == [Side.BUY, Side.SELL, Side.BUY, Side.SELL]


def test_heartbeats_go_to_both_streams() -> None:
    frame = frames.encode(frames.HeartbeatFrame(instrument="EURUSD", ts_event=42))
    out = Mt5Parser(REGISTRY).parse(43, frame)
    assert [(p.symbol, p.kind) for p in out] == [("EURUSD", "trades"), ("EURUSD", "book")]
    assert out[0].msg == Heartbeat(42, 43, "mt5")


def test_a_symbol_frame_without_a_tick_only_announces() -> None:
    frame = frames.encode(frames.SymbolFrame(instrument="EURUSD", symbol="EURUSDm", clock="EET"))
    assert Mt5Parser(REGISTRY).parse(0, frame) == []


def test_a_symbol_frame_states_the_terminal_tick_and_prices_snap_to_it() -> None:
    parser = Mt5Parser(REGISTRY)
    symbol = frames.SymbolFrame(
        instrument="BTCUSDT", symbol="BTCUSD", clock="+180", point=0.01, tick_size=0.5
    )
    out = parser.parse(9, frames.encode(symbol))
    # on both streams: the bars follow the trades stream's copy, the book window the book's
    assert [(p.symbol, p.kind) for p in out] == [("BTCUSDT", "trades"), ("BTCUSDT", "book")]
    for p in out:
        assert p.msg == InstrumentSpec(
            ts_event=9, ts_recv=9, venue="mt5", venue_symbol="BTCUSD", tick_size=0.5
        )
    # a last of 60000.26 (registry tick 0.01) lands on the terminal's 0.5 grid: 60000.5 is nearer
    out = parser.parse(
        10, ticks_frame([(T // 1000, 60_000.0, 60_000.5, 60_000.26, 1, T, 0x38, 1.0)])
    )
    (trade,) = [q.msg for q in out if isinstance(q.msg, Trade)]
    assert trade.price == 60_000.5
    only_point = frames.SymbolFrame(instrument="EURUSD", symbol="EURUSD", clock="+0", point=1e-5)
    q, _ = parser.parse(11, frames.encode(only_point))
    assert isinstance(q.msg, InstrumentSpec)
    assert q.msg.tick_size == 1e-5  # no trade_tick_size: the point is the tick


def test_prices_are_snapped_to_the_instrument_grid() -> None:
    snap = tick_snapper(0.00001)
    assert snap(1.1214049999) == 1.12140
    assert tick_snapper(0.25)(4800.3) == 4800.25
    assert tick_snapper(10.0)(61_234.0) == 61_230.0


def test_the_venue_parser_factory_knows_one_category() -> None:
    assert isinstance(make_parser("ticks", REGISTRY), Mt5Parser)
    with pytest.raises(ValueError, match="category"):
        make_parser("book", REGISTRY)
