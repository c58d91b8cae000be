"""The Bybit feed's heartbeat clock: each stream's venue time advances only from its own frames,
so a book frame stamped past a minute boundary cannot close a bar ahead of an in-flight trade.
"""

from __future__ import annotations

import json
from typing import Any

from of_feed_bybit.client import BybitClient
from of_feed_bybit.parser import BybitParser
from ofcommon.clock import LiveClock
from ofcommon.instruments import Registry, default_instruments

REGISTRY = Registry(default_instruments())
MS = 1_000_000
MINUTE = 1_733_011_260_000  # ms: a minute boundary
R0 = 1_733_011_300_000 * MS  # our receive clock (ns), unrelated to venue time


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def _trade(t_ms: int, i: str) -> bytes:
    row = {"T": t_ms, "s": "BTCUSDT", "S": "Buy", "v": "0.01", "p": "100.5", "i": i}
    return _frame({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": t_ms, "data": [row]})


def _book(kind: str, u: int, ts_ms: int, asks: list[list[str]]) -> bytes:
    data = {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": asks, "u": u, "seq": 1000 + u}
    obj = {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": ts_ms, "cts": ts_ms, "data": data}
    return _frame(obj)


def _client() -> BybitClient:
    parser = BybitParser("linear", REGISTRY)
    return BybitClient(
        url="ws://unused",
        category="linear",
        parser=parser,
        instruments=list(REGISTRY),
        clock=LiveClock(),
    )


def test_a_book_frame_ahead_of_the_trades_does_not_advance_the_trades_heartbeat() -> None:
    client = _client()
    client._on_frame(R0, _trade(MINUTE - 100, "1"))  # 59.900 s
    client._on_frame(R0 + 1 * MS, _book("snapshot", 1, MINUTE - 90, [["100.5", "1"]]))
    # the book frame is stamped 50 ms past the boundary (it is published after the trades it shows)
    client._on_frame(R0 + 2 * MS, _book("delta", 2, MINUTE + 50, [["100.5", "0.5"]]))
    beat = client.venue_clock.now("trades", R0 + 3 * MS)
    in_flight = (MINUTE - 50) * MS  # a trade at 59.950 s that arrives just after the heartbeat
    assert beat is not None
    # our own reference: the last trade's time plus the 3 ms of wall time since it arrived
    assert beat == (MINUTE - 100 + 3) * MS
    assert beat < in_flight < MINUTE * MS  # the 59 s bar stays open for it
    book = client.venue_clock.now("book", R0 + 3 * MS)
    assert book == (MINUTE + 50 + 1) * MS  # the book streams follow the newest of any topic


def test_no_trades_heartbeat_time_before_the_first_trade() -> None:
    client = _client()
    client._on_frame(R0, _book("snapshot", 1, MINUTE, [["100.5", "1"]]))
    assert client.venue_clock.now("trades", R0 + 5 * MS) is None
    assert client.venue_clock.now("book", R0 + 5 * MS) == (MINUTE + 5) * MS


def test_a_trade_moves_the_book_clock_too() -> None:
    # an instrument without a book (or before its first snapshot) still gets book heartbeats
    client = _client()
    client._on_frame(R0, _trade(MINUTE, "1"))
    assert client.venue_clock.now("book", R0 + 7 * MS) == (MINUTE + 7) * MS
