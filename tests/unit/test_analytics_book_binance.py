"""The analytics BookEngine fed with the book and trade messages the Bybit parser publishes from the
real Binance spot capture: never crossed, level for level an independent replay of the raw file.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from tests.support.binance_frames import binance_to_bybit
from tests.support.real_data import BINANCE_SPOT, require

from of_analytics.book import BookEngine, BookParams, Resolved
from of_feed_bybit.parser import BybitParser
from ofcommon.instruments import BybitVenue, Registry, default_instruments
from ofcommon.messages import BookDelta, BookSnapshot, BookStats, Consumption, Side

DEPTH = 1000  # the depth the converted frames announce (orderbook.1000.BTCUSDT)
MESSAGES = 1200  # a bounded prefix: the snapshot and about two minutes of 100 ms diffs


def raw_depth() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The REST snapshot and the depth diffs up to ``MESSAGES`` past it, read straight from the
    capture."""
    snapshot: dict[str, Any] = {}
    diffs: list[dict[str, Any]] = []
    newer = 0  # diffs past the snapshot
    with gzip.open(require(BINANCE_SPOT), "rt", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in obj:
                snapshot = obj
            elif obj["stream"].endswith("@depth@100ms"):
                diffs.append(obj["data"])
                newer += bool(snapshot) and obj["data"]["u"] > snapshot["lastUpdateId"]
                if newer == MESSAGES:
                    break
    return snapshot, diffs


def replay(side: dict[float, float], levels: Iterable[list[str]]) -> None:
    for price, size in levels:
        if float(size) == 0:
            side.pop(float(price), None)
        else:
            side[float(price)] = float(size)


def best(side: dict[float, float], *, bids: bool) -> dict[float, float]:
    """Bybit's depth rule: only the best ``DEPTH`` levels of a side are kept."""
    if len(side) <= DEPTH:
        return side
    return {p: side[p] for p in sorted(side, reverse=bids)[:DEPTH]}


def spot_registry() -> Registry:
    spot = BybitVenue(category="spot", symbol="BTCUSDT")
    return Registry(
        msgspec.structs.replace(i, bybit=spot) if i.symbol == "BTCUSDT" else i
        for i in default_instruments()
    )


def test_binance_depth_through_the_feed_rebuilds_the_raw_book_and_never_crosses() -> None:
    snapshot, raw_diffs = raw_depth()
    # Binance's sync rule, independent of the converter: drop the diffs the snapshot holds.
    last = snapshot["lastUpdateId"]
    diffs = [d for d in raw_diffs if d["u"] > last]
    assert diffs[0]["U"] <= last + 1 <= diffs[0]["u"]
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(diffs))
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    replay(bids, snapshot["bids"])
    replay(asks, snapshot["asks"])

    parser = BybitParser("spot", spot_registry(), depth=DEPTH)
    eng = BookEngine(BookParams(row=0.01))
    k = 0  # book messages applied
    published = 0
    consumed: list[Consumption] = []
    for recv_ns, frame in binance_to_bybit():
        if k == MESSAGES:
            break
        for pub in parser.parse(recv_ns, frame):
            if pub.kind == "trades":
                out = eng.on_message(pub.msg)
                consumed += [m.consumption for m in out if isinstance(m, Resolved)]
                continue
            msg = pub.msg
            assert isinstance(msg, BookSnapshot if k == 0 else BookDelta)
            if k:
                replay(bids, diffs[k - 1]["b"])
                replay(asks, diffs[k - 1]["a"])
            bids, asks = best(bids, bids=True), best(asks, bids=False)
            out = eng.on_message(msg)
            stats = [m for m in out if isinstance(m, BookStats)]
            assert all(s.valid for s in stats), f"book broken at message {k}"
            consumed += [m.consumption for m in out if isinstance(m, Resolved)]
            published += len(stats)
            assert eng.valid
            ours_bids, ours_asks = eng.levels(Side.BUY), eng.levels(Side.SELL)
            # Same levels as the replay (dict equality: the order of ``levels`` is its own test).
            assert dict(ours_bids) == bids, f"bids differ at {k}"
            assert dict(ours_asks) == asks, f"asks differ at {k}"
            assert ours_bids[0][0] < ours_asks[0][0], f"crossed at message {k}"
            for s in stats:
                assert (s.best_bid, s.best_ask) == (ours_bids[0][0], ours_asks[0][0])
                assert s.spread > 0
            k += 1
    assert k == MESSAGES
    assert eng.levels(Side.BUY) == sorted(bids.items(), reverse=True)
    assert eng.levels(Side.SELL) == sorted(asks.items())
    # Diffs come every 100 ms and stats at most every 250 ms of event time.
    assert MESSAGES // 4 <= published <= MESSAGES // 2
    # The real trades explain part of the removed size near the mid, never more than was removed.
    consumed += [m.consumption for m in eng.flush() if isinstance(m, Resolved)]
    assert consumed
    for c in consumed:
        assert 0.0 <= c.traded <= c.removed + 1e-12
        assert c.traded + c.cancelled == pytest.approx(c.removed)
    assert any(c.traded > 0 for c in consumed)
