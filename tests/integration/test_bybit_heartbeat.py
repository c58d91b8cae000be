"""The Bybit publisher's heartbeats in Redis: a book frame stamped past a minute boundary does not
move the trades-stream heartbeat past a trade that is still in flight (issue 8 §2.10).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from of_feed_bybit.client import BybitClient, Outbox
from of_feed_bybit.parser import BybitParser
from of_feed_bybit.service import BybitSettings, Publisher
from ofcommon import codec, keys
from ofcommon.clock import FakeClock
from ofcommon.instruments import Registry, default_instruments
from ofcommon.messages import Heartbeat
from ofcommon.service import ServiceContext
from ofcommon.venue import Published

REGISTRY = Registry([i for i in default_instruments() if i.symbol == "BTCUSDT"])
MS = 1_000_000
MINUTE = 1_733_011_260_000  # ms: a minute boundary
R0 = 1_733_011_300_000 * MS  # our wall clock (ns), unrelated to venue time


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def _trade(t_ms: int) -> bytes:
    row = {"T": t_ms, "s": "BTCUSDT", "S": "Buy", "v": "0.01", "p": "100.5", "i": str(t_ms)}
    return _frame({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": t_ms, "data": [row]})


def _book(kind: str, u: int, ms: int, ask: str) -> bytes:
    data = {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [["100.5", ask]], "u": u, "seq": u}
    return _frame(
        {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": ms, "cts": ms, "data": data}
    )


async def test_the_trades_heartbeat_stays_behind_a_trade_in_flight(redis: aioredis.Redis) -> None:
    clock = FakeClock(R0)
    ctx = ServiceContext("feed_bybit", BybitSettings(), redis, "hb-test", asyncio.Event(), clock)
    outbox = Outbox(100)
    client = BybitClient(
        url="ws://unused",
        category="linear",
        parser=BybitParser("linear", REGISTRY),
        instruments=list(REGISTRY),
        clock=clock,
        outbox=outbox,
    )
    publisher = Publisher(ctx, client, outbox, ["BTCUSDT"])
    client.state = "connected"  # as after a handshake; the frames below are what it received
    client._on_frame(clock.now_ns(), _trade(MINUTE - 100))  # 59.900 s
    clock.advance(0.001)
    client._on_frame(clock.now_ns(), _book("snapshot", 1, MINUTE - 90, "1"))
    clock.advance(0.001)
    # published after the trades it shows: stamped 50 ms past the boundary
    client._on_frame(clock.now_ns(), _book("delta", 2, MINUTE + 50, "0.5"))
    clock.advance(0.001)
    for item in outbox.take(100):
        assert isinstance(item, Published)
        publisher._producer.add(keys.stream(item.symbol, item.kind), item.msg)
    publisher._heartbeats()
    await publisher._producer.flush()
    beats = {}
    for kind in ("trades", "book"):
        entries = await redis.xrange(keys.stream("BTCUSDT", kind))
        msgs = [codec.decode(f[codec.FIELD]) for _, f in entries]
        (beat,) = [m for m in msgs if isinstance(m, Heartbeat)]
        beats[kind] = beat.ts_event
    in_flight = (MINUTE - 50) * MS  # a trade at 59.950 s arriving after this heartbeat
    # reference: the trade's time plus the 3 ms of wall time since it arrived
    assert beats["trades"] == (MINUTE - 100 + 3) * MS
    assert beats["trades"] < in_flight  # the 59 s bar stays open for it
    assert beats["book"] == (MINUTE + 50 + 1) * MS
