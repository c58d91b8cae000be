"""BybitParser on hand-made v5 frames: trades, dedupe, book sequencing, gaps, resets, control
frames, malformed input, disconnects and REST backfill. No Redis, no network.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from of_feed_bybit.parser import (
    COUNTERS,
    BybitParser,
    Pong,
    Resubscribe,
    SubscribeResult,
    UnknownTopic,
)
from of_feed_bybit.venue import VENUE
from ofcommon.instruments import BybitVenue, Registry, default_instruments
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Side, SideSource, Trade
from ofcommon.venue import BadFrame, Published

REGISTRY = Registry(default_instruments())
T0 = 1_733_011_200_000  # ms
R0 = 1_733_011_200_500_000_000  # ns
MS = 1_000_000


def frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def trade(
    i: str, side: str = "Buy", p: str = "100.5", v: str = "0.01", **kw: Any
) -> dict[str, Any]:
    return {"T": T0, "s": "BTCUSDT", "S": side, "v": v, "p": p, "L": "PlusTick", "i": i} | kw


def trades(*rows: dict[str, Any], symbol: str = "BTCUSDT") -> bytes:
    return frame(
        {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": T0, "data": list(rows)}
    )


def book(
    kind: str,
    u: int,
    b: list[list[Any]] | None = None,
    a: list[list[Any]] | None = None,
    *,
    symbol: str = "BTCUSDT",
    depth: int = 50,
    ts: int = T0,
    cts: int | None = T0 - 5,
) -> bytes:
    obj: dict[str, Any] = {
        "topic": f"orderbook.{depth}.{symbol}",
        "type": kind,
        "ts": ts,
        "data": {"s": symbol, "b": b or [], "a": a or [], "u": u, "seq": 1000 + u},
    }
    if cts is not None:
        obj["cts"] = cts
    return frame(obj)


SNAP_B = [["100.0", "1"], ["99.5", "2"], ["99.0", "3"]]
SNAP_A = [["100.5", "1"], ["101.0", "2"]]


def parser(depth: int = 50) -> BybitParser:
    return BybitParser("linear", REGISTRY, depth)


def started(depth: int = 50, u: int = 100) -> BybitParser:
    p = parser(depth)
    p.parse(R0, book("snapshot", u, SNAP_B, SNAP_A, depth=depth))
    return p


def only(out: list[Published]) -> Published:
    assert len(out) == 1, out
    return out[0]


# --- construction -------------------------------------------------------------------------------


def test_topics_cover_every_registry_instrument_of_the_category() -> None:
    p = parser()
    linear = [i for i in REGISTRY if i.bybit is not None and i.bybit.category == "linear"]
    assert linear
    expected = set()
    for inst in linear:
        assert inst.bybit is not None
        expected |= {f"publicTrade.{inst.bybit.symbol}", f"orderbook.50.{inst.bybit.symbol}"}
    assert set(p.topics) == expected
    assert len(p.topics) == 2 * len(linear)
    assert BybitParser("spot", REGISTRY).topics == []  # the built-ins are all linear


def test_venue_symbols_map_to_internal_symbols() -> None:
    p = parser()
    assert "publicTrade.XAGUSDT" in p.topics
    out = only(p.parse(R0, trades(trade("x1", s="XAGUSDT"), symbol="XAGUSDT")))
    assert out.symbol == "XAGUSD"
    out = only(p.parse(R0, book("snapshot", 5, SNAP_B, SNAP_A, symbol="CLUSDT")))
    assert out.symbol == "USOIL"
    assert out.kind == "book"


@pytest.mark.parametrize("depth", [1, 50, 200, 1000])
def test_valid_depths(depth: int) -> None:
    assert f"orderbook.{depth}.BTCUSDT" in BybitParser("linear", REGISTRY, depth).topics
    BybitParser("spot", REGISTRY, depth)


@pytest.mark.parametrize(("category", "depth"), [("linear", 500), ("linear", 25), ("spot", 500)])
def test_bad_depth_is_refused(category: Any, depth: int) -> None:
    with pytest.raises(ValueError, match=f"depth {depth} is not offered on Bybit {category}"):
        BybitParser(category, REGISTRY, depth)


def test_retired_linear_depths_only_on_request() -> None:
    p = BybitParser("linear", REGISTRY, 500, allow_retired_depth=True)
    assert "orderbook.500.BTCUSDT" in p.topics
    with pytest.raises(ValueError, match="depth 500"):
        BybitParser("spot", REGISTRY, 500, allow_retired_depth=True)


def test_bad_category_and_double_mapping_are_refused() -> None:
    with pytest.raises(ValueError, match="category"):
        BybitParser("inverse", REGISTRY)
    btc = REGISTRY.get("BTCUSDT")
    clash = msgspec.structs.replace(
        REGISTRY.get("XAUUSDT"), bybit=BybitVenue(category="linear", symbol="BTCUSDT")
    )
    with pytest.raises(ValueError, match="BTCUSDT is mapped by both"):
        BybitParser("linear", Registry([btc, clash]))


def test_venue_plug() -> None:
    assert VENUE.name == "bybit"
    assert VENUE.categories == ("linear", "spot")
    p = VENUE.parser("spot", REGISTRY)
    assert isinstance(p, BybitParser)
    assert p.category == "spot"
    with pytest.raises(ValueError, match="category"):
        VENUE.parser("option", REGISTRY)


# --- trades -------------------------------------------------------------------------------------


def test_trade_fields() -> None:
    p = parser()
    out = p.parse(R0, trades(trade("a1", "Buy", seq=77, BT=True), trade("a2", "Sell", T=T0 + 1)))
    assert [(o.symbol, o.kind) for o in out] == [("BTCUSDT", "trades")] * 2
    assert out[0].msg == Trade(
        T0 * MS, R0, 100.5, 0.01, Side.BUY, "a1", SideSource.EXCHANGE, seq=77, block=True
    )
    assert out[1].msg == Trade((T0 + 1) * MS, R0, 100.5, 0.01, Side.SELL, "a2")
    assert p.counters["trades"] == 2


def test_trades_are_deduplicated_by_id() -> None:
    p = parser()
    assert len(p.parse(R0, trades(trade("a1"), trade("a2")))) == 2
    out = p.parse(R0, trades(trade("a2"), trade("a3"), trade("a3")))
    assert [o.msg.trade_id for o in out if isinstance(o.msg, Trade)] == ["a3"]
    assert p.counters["duplicates"] == 2
    # Per symbol: the same id on another instrument is another trade.
    assert len(p.parse(R0, trades(trade("a1", s="XAUUSDT"), symbol="XAUUSDT"))) == 1


def test_dedupe_memory_is_a_bounded_fifo() -> None:
    p = BybitParser("linear", REGISTRY, dedupe_window=3)
    for i in "abcd":
        assert len(p.parse(R0, trades(trade(i)))) == 1
    assert p.parse(R0, trades(trade("d"))) == []  # still remembered
    assert len(p.parse(R0, trades(trade("a")))) == 1  # evicted first, so new again


def test_bad_trade_leaves_no_trace() -> None:
    p = parser()
    with pytest.raises(BadFrame, match=r"data\[1\]\.S: unknown side 'buy'"):
        p.parse(R0, trades(trade("ok"), trade("bad", side="buy")))
    assert p.counters["malformed"] == 1
    assert p.counters["trades"] == 0
    assert len(p.parse(R0, trades(trade("ok")))) == 1  # its id was not remembered


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"topic": "publicTrade.BTCUSDT", ', "not JSON"),
        (b"[1, 2]", "not a Bybit frame: Expected `object`, got `array`"),
        (b'{"ts": 1}', "neither a topic frame nor a control frame"),
        (b'{"topic": 5}', r"Expected `str \| null`, got `int` - at `\$.topic`"),
        (b'{"topic": "publicTrade.BTCUSDT", "ts": 1}', "publicTrade.BTCUSDT: no data"),
        (trades(trade("x", side="")), r"data\[0\]\.S: unknown side ''"),
        (trades(trade("x", side=None)), r"Expected `str`, got `null` - at `\$\[0\]\.S`"),
        (trades({"T": T0, "s": "BTCUSDT", "S": "Buy", "v": "1", "i": "x"}), "`p`"),
        (trades({"T": T0, "s": "BTCUSDT", "S": "Buy", "p": "1", "i": "x"}), "`v`"),
        (trades({"s": "BTCUSDT", "S": "Buy", "v": "1", "p": "1", "i": "x"}), "`T`"),
        (trades({"T": T0, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "1"}), "`i`"),
        (trades(trade("x", T=str(T0))), r"Expected `int`, got `str` - at `\$\[0\]\.T`"),
        (trades(trade("x", T=-1)), r"Expected `int` >= 0"),
        (trades(trade("x", p="abc")), r"data\[0\]\.p: 'abc' is not a plain decimal"),
        (trades(trade("x", p="1e3")), r"data\[0\]\.p: '1e3' is not a plain decimal"),
        (trades(trade("x", p=100.5)), r"Expected `str`, got `float`"),
        (trades(trade("x", v="0")), r"data\[0\]\.v: '0' is not positive"),
        (trades(trade("x", v="-1")), r"data\[0\]\.v: '-1' is not a plain decimal"),
        (trades(trade("")), r"data\[0\]\.i: empty trade id"),
        (trades(trade("x", s="ETHUSDT")), r"data\[0\]\.s is 'ETHUSDT', not 'BTCUSDT'"),
    ],
)
def test_malformed_frames_raise_bad_frame(payload: bytes, reason: str) -> None:
    p = parser()
    with pytest.raises(BadFrame, match=reason):
        p.parse(R0, payload)
    assert p.counters["malformed"] == 1
    assert p.counters["frames"] == 1
    assert p.events == []


# --- book ---------------------------------------------------------------------------------------


def test_snapshot_is_published_sorted_with_cts_time() -> None:
    p = parser()
    b = [["99.0", "3"], ["100.0", "1"], ["99.5", "2"]]  # unsorted on purpose
    out = only(p.parse(R0, book("snapshot", 100, b, SNAP_A, ts=T0, cts=T0 - 7)))
    assert out.msg == BookSnapshot(
        (T0 - 7) * MS,
        R0,
        100,
        [(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)],
        [(100.5, 1.0), (101.0, 2.0)],
        depth=50,
    )
    assert p.counters["snapshots"] == 1


def test_ts_is_the_event_time_without_cts() -> None:
    p = parser()
    out = only(p.parse(R0, book("snapshot", 100, SNAP_B, SNAP_A, ts=T0, cts=None)))
    assert out.msg.ts_event == T0 * MS


def test_delta_applies_and_publishes_net_changes() -> None:
    p = started()
    out = only(
        p.parse(R0 + 1, book("delta", 101, [["99.5", "0"], ["99.8", "4"]], [["100.5", "2"]]))
    )
    assert out.msg == BookDelta(
        (T0 - 5) * MS, R0 + 1, 101, [(99.8, 4.0), (99.5, 0.0)], [(100.5, 2.0)]
    )
    current = p.book("BTCUSDT")
    assert current is not None
    assert current.levels("bid") == [(100.0, 1.0), (99.8, 4.0), (99.0, 3.0)]
    assert current.levels("ask") == [(100.5, 2.0), (101.0, 2.0)]
    assert p.counters["deltas"] == 1


def test_delta_before_snapshot_is_ignored_with_one_gap_and_one_resubscribe_request() -> None:
    p = parser()
    gap = only(p.parse(R0, book("delta", 7, [["1", "1"]], ts=T0 + 5, cts=T0 + 4)))
    assert gap == Published(
        "BTCUSDT",
        "book",
        Gap((T0 + 4) * MS, R0, "book", "delta before snapshot: no book until a snapshot", 0, 7),
    )
    assert p.parse(R0, book("delta", 8, [["1", "1"]])) == []
    assert p.counters["ignored_deltas"] == 2
    assert p.events == [Resubscribe("orderbook.50.BTCUSDT", "delta before snapshot")]
    assert p.book("BTCUSDT") is None


def test_u_gap_drops_the_book_until_the_next_snapshot() -> None:
    p = started(u=100)
    assert only(p.parse(R0, book("delta", 101, [["99.8", "1"]]))).msg.seq == 101
    out = only(p.parse(R0 + 5, book("delta", 105, [["99.9", "1"]], ts=T0 + 50, cts=T0 + 40)))
    assert out == Published(
        "BTCUSDT",
        "book",
        Gap((T0 + 40) * MS, R0 + 5, "book", "u jumped from 101 to 105", last_seq=101, next_seq=105),
    )
    assert p.events == [Resubscribe("orderbook.50.BTCUSDT", "u jumped from 101 to 105")]
    assert p.book("BTCUSDT") is None
    # Deltas go on arriving until the resubscription lands; none is used, none re-requests.
    assert p.parse(R0, book("delta", 106, [["99.9", "1"]])) == []
    assert len(p.events) == 1
    assert p.counters["ignored_deltas"] == 1
    assert p.counters["gaps"] == 1
    snap = only(p.parse(R0, book("snapshot", 200, [["98", "1"]], [["99", "1"]])))
    assert isinstance(snap.msg, BookSnapshot)
    assert only(p.parse(R0, book("delta", 201, [["97", "1"]]))).msg.seq == 201


def test_repeated_u_on_a_delta_is_a_gap() -> None:
    p = started(u=100)
    p.parse(R0, book("delta", 101))
    out = only(p.parse(R0, book("delta", 101)))
    assert isinstance(out.msg, Gap)
    assert out.msg.reason == "u jumped from 101 to 101"


def test_u_1_is_a_reset_even_when_typed_delta() -> None:
    p = started(u=5000)
    out = only(p.parse(R0, book("delta", 1, [["90", "1"]], [["91", "2"]])))
    assert out.msg == BookSnapshot((T0 - 5) * MS, R0, 1, [(90.0, 1.0)], [(91.0, 2.0)], depth=50)
    assert p.counters["resets"] == 1
    assert p.counters["gaps"] == 0
    assert isinstance(only(p.parse(R0, book("delta", 2, [["89", "1"]]))).msg, BookDelta)


def test_u_1_after_a_gap_restores_the_book() -> None:
    p = started(u=10)
    p.parse(R0, book("delta", 12))
    assert p.book("BTCUSDT") is None
    assert isinstance(only(p.parse(R0, book("delta", 1, [["90", "1"]]))).msg, BookSnapshot)
    assert p.book("BTCUSDT") is not None


def test_later_snapshot_replaces_everything() -> None:
    p = started()
    p.parse(R0, book("snapshot", 50, [["80", "1"]], [["81", "1"]]))  # u may go down: no check
    current = p.book("BTCUSDT")
    assert current is not None
    assert current.levels("bid") == [(80.0, 1.0)]
    assert current.levels("ask") == [(81.0, 1.0)]
    assert p.counters["gaps"] == 0


def test_depth_1_snapshots_may_repeat_u() -> None:
    p = parser(depth=1)
    for size in ("1", "2", "3"):
        out = only(p.parse(R0, book("snapshot", 77, [["100", size]], [["101", "1"]], depth=1)))
        assert isinstance(out.msg, BookSnapshot)
    assert p.counters["gaps"] == 0
    assert p.counters["snapshots"] == 3


def test_crossing_delta_is_refused_as_a_gap() -> None:
    p = started(u=100)
    out = only(p.parse(R0, book("delta", 101, [["100.5", "1"]])))
    assert isinstance(out.msg, Gap)
    assert out.msg.stream == "book"
    assert out.msg.reason == "delta u=101 would cross the book (bid 100.5 >= ask 100.5)"
    assert (out.msg.last_seq, out.msg.next_seq) == (100, 101)
    assert p.counters["crossed"] == 1
    assert p.counters["deltas"] == 0
    assert p.book("BTCUSDT") is None
    assert p.events == [Resubscribe("orderbook.50.BTCUSDT", out.msg.reason)]


def test_crossed_snapshot_is_refused_too() -> None:
    p = parser()
    out = only(p.parse(R0, book("snapshot", 9, [["101", "1"]], [["100", "1"]])))
    assert isinstance(out.msg, Gap)
    assert out.msg.reason == "snapshot u=9 would cross the book (bid 101.0 >= ask 100.0)"
    assert p.counters["snapshots"] == 0
    assert p.book("BTCUSDT") is None
    assert len(p.events) == 1


def test_book_is_truncated_to_the_subscribed_depth() -> None:
    p = parser(depth=50)
    bids = [[f"{1000 - k}", "1"] for k in range(60)]
    snap = only(p.parse(R0, book("snapshot", 10, bids, [["2000", "1"]]))).msg
    assert isinstance(snap, BookSnapshot)
    assert len(snap.bids) == 50
    assert snap.bids[0] == (1000.0, 1.0)
    assert snap.bids[-1] == (951.0, 1.0)
    delta = only(p.parse(R0, book("delta", 11, [["1000.5", "2"]]))).msg
    assert isinstance(delta, BookDelta)
    assert delta.bids == [(1000.5, 2.0), (951.0, 0.0)]  # the level pushed out, as a delete
    assert p.counters["truncated"] == 11


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (book("update", 101), "type 'update' is neither 'snapshot' nor 'delta'"),
        (book("delta", 101, ts="1"), r"Expected `int \| null`, got `str` - at `\$\.ts`"),
        (
            frame({"topic": "orderbook.50.BTCUSDT", "type": "delta", "data": {}}),
            "neither cts nor ts",
        ),
        (
            frame(
                {
                    "topic": "orderbook.50.BTCUSDT",
                    "type": "delta",
                    "ts": 1,
                    "data": {"s": "BTCUSDT", "b": [], "a": []},
                }
            ),
            "missing required field `u`",
        ),
        (book("delta", 101, [["99", "1", "5"]]), r"Expected `array` of length 2 - at `\$\.b\[0\]`"),
        (book("delta", 101, [["99", "x"]]), r"data\.b\[0\]: 'x' is not a plain decimal"),
        (book("delta", 101, [], [["0", "1"]]), r"data\.a\[0\]: price '0' is not positive"),
        (book("delta", 101, [[99, "1"]]), "Expected `str`, got `int`"),
        (
            book("delta", 101, symbol="BTCUSDT").replace(b'"s": "BTCUSDT"', b'"s": "ETHUSDT"'),
            "data.s is 'ETHUSDT'",
        ),
        (book("delta", -3), "Expected `int` >= 0"),
    ],
)
def test_malformed_book_frames_leave_the_book_alone(payload: bytes, reason: str) -> None:
    p = started(u=100)
    before = p.book("BTCUSDT")
    assert before is not None
    levels = (before.levels("bid"), before.levels("ask"))
    with pytest.raises(BadFrame, match=reason):
        p.parse(R0, payload)
    after = p.book("BTCUSDT")
    assert after is not None
    assert (after.levels("bid"), after.levels("ask")) == levels
    # The sequence is intact: the next delta applies without a gap.
    assert isinstance(only(p.parse(R0, book("delta", 101, [["99.9", "1"]]))).msg, BookDelta)
    assert p.counters["gaps"] == 0
    assert p.counters["malformed"] == 1


# --- control frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pong",
    [
        {"success": True, "ret_msg": "pong", "conn_id": "c1", "req_id": "", "op": "ping"},
        {"success": True, "ret_msg": "pong", "conn_id": "c1", "op": "ping"},  # spot
        {"op": "pong", "args": ["1733011200000"]},  # option / spread
    ],
)
def test_pongs_are_events(pong: dict[str, Any]) -> None:
    p = parser()
    assert p.parse(R0, frame(pong)) == []
    assert p.events == [Pong(R0)]
    assert p.counters["pongs"] == 1


@pytest.mark.parametrize(
    ("ack", "expected"),
    [
        (
            {"success": True, "ret_msg": "", "conn_id": "c", "req_id": "r1", "op": "subscribe"},
            SubscribeResult(True, "", "r1", "subscribe"),
        ),
        (
            {"success": True, "ret_msg": "subscribe", "conn_id": "c", "op": "subscribe"},
            SubscribeResult(True, "subscribe", "", "subscribe"),
        ),
        (
            {
                "success": False,
                "ret_msg": "error:handler not found,topic:orderbook.500.BTCUSDT",
                "conn_id": "c",
                "req_id": "r2",
                "op": "subscribe",
            },
            SubscribeResult(
                False, "error:handler not found,topic:orderbook.500.BTCUSDT", "r2", "subscribe"
            ),
        ),
        (
            {"success": True, "ret_msg": "", "conn_id": "c", "op": "unsubscribe"},
            SubscribeResult(True, "", "", "unsubscribe"),
        ),
        (
            {
                "success": True,
                "type": "COMMAND_RESP",
                "conn_id": "c",
                "req_id": "r3",
                "data": {"successTopics": ["a"], "failTopics": ["b", "c"]},
            },
            SubscribeResult(True, "failTopics: b, c", "r3", ""),
        ),
    ],
)
def test_acks_are_events(ack: dict[str, Any], expected: SubscribeResult) -> None:
    p = parser()
    assert p.parse(R0, frame(ack)) == []
    assert p.events == [expected]
    assert p.counters["acks"] == 1


@pytest.mark.parametrize(
    "topic", ["tickers.BTCUSDT", "publicTrade.ETHUSDT", "orderbook.7.BTCUSDT", "orderbook.50.XX"]
)
def test_unknown_topics_are_events(topic: str) -> None:
    p = parser()
    payload = frame({"topic": topic, "type": "snapshot", "ts": T0, "data": {"whatever": 1}})
    assert p.parse(R0, payload) == []
    assert p.events == [UnknownTopic(topic)]
    assert p.counters["unknown_topic"] == 1


def test_a_book_topic_at_another_offered_depth_is_served() -> None:
    """A replayed depth-200 capture feeds a parser built for depth 50 (replay knows no depth)."""
    p = parser()
    snap = {
        "topic": "orderbook.200.BTCUSDT",
        "type": "snapshot",
        "ts": T0,
        "data": {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [["100.5", "2"]], "u": 7, "seq": 1},
    }
    [out] = p.parse(R0, frame(snap))
    assert isinstance(out.msg, BookSnapshot)
    assert out.msg.depth == 200
    assert p.events == []
    assert p.counters["unknown_topic"] == 0


# --- disconnects and backfill -------------------------------------------------------------------


def test_disconnect_marks_gaps_on_both_streams_of_every_instrument() -> None:
    p = started(u=100)
    p.parse(R0, book("delta", 101, cts=T0 + 3))
    p.parse(R0, trades(trade("t1", seq=9, T=T0 + 2)))
    out = p.disconnected(R0 + 10)
    symbols = sorted(
        i.symbol for i in REGISTRY if i.bybit is not None and i.bybit.category == "linear"
    )
    assert sorted({o.symbol for o in out}) == symbols
    assert len(out) == 2 * len(symbols)
    assert all(isinstance(o.msg, Gap) and o.msg.stream == o.kind for o in out)
    btc = {o.kind: o.msg for o in out if o.symbol == "BTCUSDT"}
    assert btc["book"] == Gap(
        (T0 + 3) * MS, R0 + 10, "book", "connection lost: no book until a new snapshot", 101
    )
    assert btc["trades"] == Gap(
        (T0 + 2) * MS, R0 + 10, "trades", "connection lost: trades may be missing until backfill", 9
    )
    quiet = {o.kind: o.msg for o in out if o.symbol == "XAUUSDT"}
    assert quiet["book"].ts_event == R0 + 10  # nothing seen yet: the receive time stands in
    assert p.book("BTCUSDT") is None
    assert p.counters["gaps"] == len(out)
    assert p.events == []
    # On the new connection, the first book message must again be a snapshot.
    assert p.parse(R0, book("delta", 102)) == []
    assert p.events == [Resubscribe("orderbook.50.BTCUSDT", "delta before snapshot")]


def rest(exec_id: str, t: int, side: str = "Buy", seq: int = 0, **kw: Any) -> dict[str, Any]:
    row = {"execId": exec_id, "symbol": "BTCUSDT", "price": "100.5", "size": "0.5"}
    return row | {"side": side, "time": str(T0 + t), "isBlockTrade": False, "seq": seq} | kw


def test_backfill_with_overlap_publishes_only_the_missing_trades_oldest_first() -> None:
    p = parser()
    p.parse(R0, trades(trade("a", T=T0), trade("b", T=T0 + 1)))
    p.disconnected(R0 + 1)
    rows = [
        rest("d", 3, "Sell", seq=12),
        rest("c", 2, seq=11),
        rest("b", 1, seq=10),
    ]  # newest first
    out = p.backfill(R0 + 2, "BTCUSDT", rows)
    assert [o.msg for o in out] == [
        Trade((T0 + 2) * MS, R0 + 2, 100.5, 0.5, Side.BUY, "c", seq=11, backfill=True),
        Trade((T0 + 3) * MS, R0 + 2, 100.5, 0.5, Side.SELL, "d", seq=12, backfill=True),
    ]
    assert p.counters["backfilled"] == 2
    assert p.counters["duplicates"] == 1
    # Live frames repeating backfilled trades are duplicates too.
    assert p.parse(R0, trades(trade("d"))) == []


def test_backfill_without_overlap_adds_a_gap_first() -> None:
    p = parser()
    p.parse(R0, trades(trade("a", T=T0, seq=5)))
    p.disconnected(R0 + 1)
    gaps = p.counters["gaps"]
    out = p.backfill(R0 + 2, "BTCUSDT", [rest("f", 9, seq=20), rest("e", 8, seq=19)])
    assert out[0] == Published(
        "BTCUSDT",
        "trades",
        Gap(
            T0 * MS,
            R0 + 2,
            "trades",
            "backfill did not reach the last trade before the disconnect",
            last_seq=5,
            next_seq=19,
        ),
    )
    assert [o.msg.trade_id for o in out[1:] if isinstance(o.msg, Trade)] == ["e", "f"]
    assert p.counters["gaps"] == gaps + 1
    # The anchor is consumed: a second backfill adds no second gap.
    assert p.backfill(R0 + 3, "BTCUSDT", []) == []


def test_empty_backfill_after_a_disconnect_is_a_gap() -> None:
    p = parser()
    p.parse(R0, trades(trade("a")))
    p.disconnected(R0 + 1)
    out = only(p.backfill(R0 + 2, "BTCUSDT", []))
    assert isinstance(out.msg, Gap)


def test_backfill_without_a_disconnect_seeds_the_tape() -> None:
    p = parser()
    out = p.backfill(R0, "BTCUSDT", [rest("x", 2), rest("w", 1)])
    assert [o.msg.trade_id for o in out if isinstance(o.msg, Trade)] == ["w", "x"]
    assert p.parse(R0, trades(trade("x"))) == []


def test_backfill_keeps_oldest_first_lists_in_order() -> None:
    p = parser()
    rows = [rest("m1", 1, seq=1), rest("m2", 1, seq=1), rest("m3", 2, seq=2)]
    out = p.backfill(R0, "BTCUSDT", rows)
    assert [o.msg.trade_id for o in out if isinstance(o.msg, Trade)] == ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"side": "buy"}, r"\[1\]\.side: unknown side 'buy'"),
        ({"time": "17e11"}, r"\[1\]\.time: '17e11' is not a whole number"),
        ({"price": "-1"}, r"\[1\]\.price: '-1' is not a plain decimal"),
        ({"size": "0"}, r"\[1\]\.size: '0' is not positive"),
        ({"symbol": "ETHUSDT"}, r"\[1\]\.symbol is 'ETHUSDT'"),
        ({"execId": 5}, r"Expected `str`, got `int` - at `\$\[1\]\.execId`"),
        ({"execId": ""}, r"\[1\]\.execId: empty trade id"),
        ({"seq": -1}, r"\[1\]\.seq: -1 is negative"),
    ],
)
def test_malformed_backfill_rows(row: dict[str, Any], reason: str) -> None:
    p = parser()
    with pytest.raises(BadFrame, match=reason):
        p.backfill(R0, "BTCUSDT", [rest("ok", 1), rest("x", 2) | row])
    assert p.counters["malformed"] == 1
    assert p.counters["backfilled"] == 0
    assert len(p.backfill(R0, "BTCUSDT", [rest("ok", 1)])) == 1  # nothing was remembered


def test_backfill_of_a_foreign_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="'EURUSD' is not an instrument of this Bybit linear feed"):
        parser().backfill(R0, "EURUSD", [])


def test_counters_are_all_present() -> None:
    p = parser()
    assert set(p.counters) == set(COUNTERS)
    assert {
        "frames",
        "trades",
        "duplicates",
        "snapshots",
        "deltas",
        "gaps",
        "resets",
        "malformed",
        "unknown_topic",
        "crossed",
    } <= set(p.counters)


# --- model check through the parser -------------------------------------------------------------

_side_levels = st.lists(
    st.tuples(st.integers(min_value=1, max_value=40), st.sampled_from(["0", "1", "2.5", "7"])),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.sampled_from([1, 50]),
    snapshot=st.tuples(_side_levels, _side_levels),
    deltas=st.lists(st.tuples(_side_levels, _side_levels), max_size=20),
)
def test_published_messages_rebuild_the_naive_book(
    depth: int,
    snapshot: tuple[list[tuple[int, str]], list[tuple[int, str]]],
    deltas: list[tuple[list[tuple[int, str]], list[tuple[int, str]]]],
) -> None:
    def raw(levels: list[tuple[int, str]], base: int) -> list[list[str]]:
        return [[f"{base + p}.5", s] for p, s in levels]  # bids 1-40, asks 101-140: no crossing

    twins = (parser(depth), parser(depth))
    frames = [book("snapshot", 100, raw(snapshot[0], 0), raw(snapshot[1], 100), depth=depth)]
    frames += [
        book("delta", 101 + k, raw(b, 0), raw(a, 100), depth=depth)
        for k, (b, a) in enumerate(deltas)
    ]
    naive: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    consumer: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for k, payload in enumerate(frames):
        outs = [p.parse(R0 + k, payload) for p in twins]
        assert outs[0] == outs[1]  # deterministic: no clock, no randomness
        data = json.loads(payload)["data"]
        if k == 0:
            naive = {"bid": {}, "ask": {}}
        for side, key in (("bid", "b"), ("ask", "a")):
            for price, size in data[key]:
                if float(size):
                    naive[side][float(price)] = float(size)
                else:
                    naive[side].pop(float(price), None)
            kept = sorted(naive[side], reverse=side == "bid")[:depth]
            naive[side] = {q: naive[side][q] for q in kept}
        msg = only(outs[0]).msg
        if isinstance(msg, BookSnapshot):
            consumer = {"bid": dict(msg.bids), "ask": dict(msg.asks)}
        else:
            assert isinstance(msg, BookDelta)
            for side, changed in (("bid", msg.bids), ("ask", msg.asks)):
                for price, size in changed:
                    if size:
                        consumer[side][price] = size
                    else:
                        consumer[side].pop(price, None)
        current = twins[0].book("BTCUSDT")
        assert current is not None
        for side in ("bid", "ask"):
            expected = sorted(naive[side].items(), reverse=side == "bid")
            assert current.levels(side) == expected
            assert sorted(consumer[side].items(), reverse=side == "bid") == expected
    assert twins[0].counters["gaps"] == 0
