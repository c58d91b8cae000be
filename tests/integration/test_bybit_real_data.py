"""BybitParser on real recorded data: the Binance spot capture converted to Bybit v5 frames and
Bybit's own XRPUSDT ob500 archive, each checked against an independent naive read of the raw file.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.support.binance_frames import (
    BINANCE_SPOT,
    BYBIT_XRP_OB500,
    CaptureGap,
    binance_to_bybit,
    bybit_archive_frames,
    require,
)

from of_feed_bybit.book import L2Book
from of_feed_bybit.parser import BybitParser
from ofcommon.instruments import BybitVenue, Instrument, Registry, default_instruments
from ofcommon.messages import BookDelta, BookSnapshot, Side, SideSource, Trade

PriceSizes = dict[float, float]


class ConsumerBook:
    """What a downstream stage rebuilds from the published book messages alone."""

    def __init__(self) -> None:
        self.bids: PriceSizes = {}
        self.asks: PriceSizes = {}

    def apply(self, msg: BookSnapshot | BookDelta) -> None:
        if isinstance(msg, BookSnapshot):
            self.bids, self.asks = dict(msg.bids), dict(msg.asks)
            return
        for side, levels in ((self.bids, msg.bids), (self.asks, msg.asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)

    def sorted(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def naive_apply(side: PriceSizes, levels: Iterable[list[str]]) -> None:
    for price, size in levels:
        if float(size) == 0:
            side.pop(float(price), None)
        else:
            side[float(price)] = float(size)


def naive_top(side: PriceSizes, depth: int, *, bids: bool) -> PriceSizes:
    return {p: side[p] for p in sorted(side, reverse=bids)[:depth]}


def book_of(parser: BybitParser, symbol: str) -> L2Book:
    book = parser.book(symbol)
    assert book is not None, f"no valid book after {parser.counters}"
    return book


def assert_uncrossed(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
    if bids and asks:
        assert bids[0][0] < asks[0][0], f"crossed: {bids[0]} / {asks[0]}"


# --- (a) Binance spot BTCUSDT capture, converted ---------------------------------------------


def raw_binance() -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Trades, the REST snapshot and the depth diffs, read straight from the capture."""
    trades: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    snapshot: dict[str, Any] = {}
    with gzip.open(require(BINANCE_SPOT), "rt") as f:
        for line in f:
            obj = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in obj:
                snapshot = obj
            elif obj["stream"] == "btcusdt@trade":
                trades.append(obj["data"])
            elif obj["stream"] == "btcusdt@depth@100ms":
                diffs.append(obj["data"])
    return trades, snapshot, diffs


def spot_registry() -> Registry:
    spot = BybitVenue(category="spot", symbol="BTCUSDT")
    return Registry(
        msgspec.structs.replace(i, bybit=spot) if i.symbol == "BTCUSDT" else i
        for i in default_instruments()
    )


def test_binance_trades_keep_the_true_aggressor_side() -> None:
    raw_trades, _, _ = raw_binance()
    parser = BybitParser("spot", spot_registry(), depth=1000)
    published = [
        pub.msg
        for recv_ns, frame in binance_to_bybit()
        for pub in parser.parse(recv_ns, frame)
        if pub.kind == "trades"
    ]
    assert all(isinstance(t, Trade) for t in published)
    assert len(published) == len(raw_trades) == 9_757
    # m = buyer is the maker, so the seller was the aggressor
    truth = [(str(t["t"]), Side.SELL if t["m"] else Side.BUY) for t in raw_trades]
    assert [(t.trade_id, t.side) for t in published] == truth
    assert sum(t.side == Side.BUY for t in published) == 4_103
    assert [(t.price, t.size, t.ts_event) for t in published] == [
        (float(t["p"]), float(t["q"]), t["T"] * 1_000_000) for t in raw_trades
    ]
    assert all(t.side_source == SideSource.EXCHANGE and not t.backfill for t in published)
    assert parser.counters["trades"] == 9_757
    assert parser.counters["duplicates"] == parser.counters["malformed"] == 0


@pytest.mark.slow
def test_binance_book_equals_a_naive_replay_and_never_crosses() -> None:
    _, snapshot, raw_diffs = raw_binance()
    depth = 1000
    # Binance's sync rule, written independently of the converter: drop diffs the snapshot
    # already holds; the first kept one straddles lastUpdateId + 1; then U follows u by one.
    last = snapshot["lastUpdateId"]
    diffs = [d for d in raw_diffs if d["u"] > last]
    assert diffs[0]["U"] <= last + 1 <= diffs[0]["u"]
    for before, after in itertools.pairwise(diffs):
        assert after["U"] == before["u"] + 1

    full_bids: PriceSizes = {}
    full_asks: PriceSizes = {}
    naive_apply(full_bids, snapshot["bids"])
    naive_apply(full_asks, snapshot["asks"])
    bids, asks = dict(full_bids), dict(full_asks)

    parser = BybitParser("spot", spot_registry(), depth=depth)
    consumer = ConsumerBook()
    k = 0  # book messages published so far
    for recv_ns, frame in binance_to_bybit():
        for pub in parser.parse(recv_ns, frame):
            if pub.kind != "book":
                continue
            assert isinstance(pub.msg, BookSnapshot if k == 0 else BookDelta), pub.msg
            if k:
                for side, full, key in ((bids, full_bids, "b"), (asks, full_asks, "a")):
                    naive_apply(side, diffs[k - 1][key])
                    naive_apply(full, diffs[k - 1][key])
            # Bybit's depth rule: keep the best N after each message.
            bids, asks = naive_top(bids, depth, bids=True), naive_top(asks, depth, bids=False)
            expected = (sorted(bids.items(), reverse=True), sorted(asks.items()))
            book = book_of(parser, "BTCUSDT")
            ours = (book.levels("bid"), book.levels("ask"))
            assert ours == expected, f"book differs after book message {k}"
            consumer.apply(pub.msg)
            assert consumer.sorted() == expected, f"consumer book differs after message {k}"
            assert_uncrossed(*ours)
            # Whatever the window dropped, every level we hold is the full replay's level.
            assert all(full_bids[p] == size for p, size in ours[0])
            assert all(full_asks[p] == size for p, size in ours[1])
            k += 1
    assert k == 1 + len(diffs) == 3_450
    assert parser.counters["gaps"] == parser.counters["crossed"] == 0
    assert parser.counters["ignored_deltas"] == 0


# --- (b) Bybit linear XRPUSDT ob500 archive ----------------------------------------------------


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


def test_bybit_xrp_archive_equals_a_naive_replay_and_never_crosses() -> None:
    raw = [json.loads(line) for line in require(BYBIT_XRP_OB500).read_text().splitlines() if line]
    # ob500 was retired on linear in late 2025; the archive still carries it.
    parser = BybitParser("linear", xrp_registry(), depth=500, allow_retired_depth=True)
    consumer = ConsumerBook()
    bids: PriceSizes = {}
    asks: PriceSizes = {}
    frames = list(bybit_archive_frames())
    assert len(frames) == len(raw) == 50
    updates = deletes = 0
    for k, ((recv_ns, frame), msg) in enumerate(zip(frames, raw, strict=True)):
        if msg["type"] == "snapshot":
            bids, asks = {}, {}
        else:
            updates += len(msg["data"]["b"]) + len(msg["data"]["a"])
            deletes += sum(s == "0" for _, s in msg["data"]["b"] + msg["data"]["a"])
        naive_apply(bids, msg["data"]["b"])
        naive_apply(asks, msg["data"]["a"])

        pub = parser.parse(recv_ns, frame)
        assert len(pub) == 1
        assert pub[0].symbol == "XRPUSDT"
        published = pub[0].msg
        assert isinstance(published, BookSnapshot if k == 0 else BookDelta)
        assert published.seq == msg["data"]["u"]
        assert published.ts_event == msg["cts"] * 1_000_000
        consumer.apply(published)

        book = book_of(parser, "XRPUSDT")
        expected = (sorted(bids.items(), reverse=True), sorted(asks.items()))
        assert (book.levels("bid"), book.levels("ask")) == expected, f"differs after line {k + 1}"
        assert consumer.sorted() == expected
        assert (len(expected[0]), len(expected[1])) == (500, 500)  # the README's claim
        assert_uncrossed(*expected)
        assert not book.crossed()
    assert (updates, deletes) == (2_966, 18)
    assert parser.counters["snapshots"] == 1
    assert parser.counters["deltas"] == 49
    assert parser.counters["gaps"] == parser.counters["absent_deletes"] == 0
    assert parser.counters["truncated"] == 0


def test_missing_real_data_skips_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="real market data not found"):
        require(tmp_path / "absent.gz")


def _capture(path: Path, objs: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wt") as f:
        for k, obj in enumerate(objs):
            f.write(f"{1_000 + k} {json.dumps(obj)}\n")
    return path


def _diff(first: int, last: int) -> dict[str, Any]:
    data = {"e": "depthUpdate", "E": 5, "s": "BTCUSDT", "U": first, "u": last, "b": [], "a": []}
    return {"stream": "btcusdt@depth@100ms", "data": data}


def test_converter_fails_loudly_on_a_broken_diff_chain(tmp_path: Path) -> None:
    snap = {"lastUpdateId": 10, "bids": [["1.0", "1.0"]], "asks": [["2.0", "1.0"]]}
    ok = _capture(tmp_path / "ok.gz", [_diff(5, 8), snap, _diff(9, 12), _diff(13, 14)])
    frames = [json.loads(f) for _, f in binance_to_bybit(ok)]
    assert [(f["type"], f["data"]["u"], f["data"]["seq"]) for f in frames] == [
        ("snapshot", 10, 10),
        ("delta", 11, 12),
        ("delta", 12, 14),
    ]
    gap = _capture(tmp_path / "gap.gz", [snap, _diff(9, 12), _diff(14, 15)])
    with pytest.raises(CaptureGap, match="U=14 u=15 does not follow update id 12"):
        list(binance_to_bybit(gap))
    late = _capture(tmp_path / "late.gz", [snap, _diff(12, 15)])
    with pytest.raises(CaptureGap, match="U=12"):
        list(binance_to_bybit(late))
    none = _capture(tmp_path / "none.gz", [_diff(1, 2)])
    with pytest.raises(CaptureGap, match="no REST depth snapshot"):
        list(binance_to_bybit(none))
