"""The WebSocket /ws of a running API: token by header or first message, snapshot then updates,
contiguous sequence numbers on critical channels under load, conflation of ticks, and a client
that reads nothing closed with a reason while another one on the same channels gets everything.

The API runs as a real service; the test publishes into the streams with the bus Producer.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from tests.support.api_stack import TOKEN, Stack, pipeline
from tests.support.raw_ws import RawWebSocket
from websockets.asyncio.client import ClientConnection

from ofcommon import keys
from ofcommon.bus import Producer
from ofcommon.messages import (
    Bar,
    Bias,
    Direction,
    KeyLevel,
    PatternSignal,
    ProfileUpdate,
    Side,
    Trade,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

SYMBOLS = ("BTCUSDT", "NAS100USDT")
S = 1_000_000_000
MIN = 60 * S
T0 = 28_333_333 * MIN
QUEUE = 100  # OF_API_WS_QUEUE of this API (above the burst one hub read can bring: 20)


@pytest.fixture(scope="module")
def stack(
    redis_url: str, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import redis as sync_redis

    r = sync_redis.Redis.from_url(redis_url)
    r.flushdb()
    r.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env.update(
        OF_REDIS_URL=redis_url,
        OF_LOG_FORMAT="json",
        OF_API_WS_QUEUE=str(QUEUE),
        OF_API_READ_COUNT="20",
    )
    with pipeline(
        env, module_database_url, tmp_path_factory.mktemp("api-ws"), SYMBOLS, sim=None, stages=()
    ) as s:
        yield s


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[Producer]:
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        yield Producer(client, service="test", trim_by_age=False)
    finally:
        await client.aclose()


def _bar(i: int, *, final: bool) -> Bar:
    p = 100.0 + i
    return Bar(
        "1m",
        T0 + i * MIN,
        T0 + (i + 1) * MIN,
        p,
        p + 1,
        p - 1,
        p,
        1.0,
        0.5,
        0.5,
        0.0,
        0.0,
        0.0,
        1,
        p,
        p,
        [],
        final,
    )


def _signal(i: int) -> PatternSignal:
    return PatternSignal(
        signal_id=f"sig-{i}",
        ts_event=T0 + i * MIN,
        pattern="absorption",
        direction=Direction.LONG,
        price=100.0 + i,
        strength=50.0,
    )


def _trade(i: int) -> Trade:
    return Trade(T0 + i * 1000, T0 + i * 1000, 100.0 + i / 100, 1.0, Side.BUY, f"t{i}")


async def _connect(stack: Stack, **kw: Any) -> ClientConnection:
    return await websockets.connect(
        stack.ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, **kw
    )


async def _next(ws: ClientConnection, channel: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if msg["channel"] == channel:
            return msg


async def _subscribe(ws: ClientConnection, channels: list[str], symbols: list[str]) -> None:
    """Subscribe and wait for every snapshot: what is published from then on are updates (what
    came before a snapshot was read is in it)."""
    await ws.send(json.dumps({"op": "subscribe", "channels": channels, "symbols": symbols}))
    await _next(ws, "subscribed")
    owed = {(c, s) for c in channels for s in symbols}
    while owed:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if msg["snapshot"]:
            owed.discard((msg["channel"], msg["symbol"]))


async def _closed(ws: ClientConnection) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


async def test_a_missing_or_wrong_token_is_refused(stack: Stack) -> None:
    async with websockets.connect(
        stack.ws_url, additional_headers={"Authorization": "Bearer nope"}
    ) as ws:
        code, reason = await _closed(ws)
        assert code == 4401
        assert "invalid" in reason
    async with websockets.connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": TOKEN + "x"}))
        code, reason = await _closed(ws)
        assert code == 4401
    async with websockets.connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["tick"], "symbols": ["BTCUSDT"]}))
        code, _ = await _closed(ws)
        assert code == 4401
    async with websockets.connect(stack.ws_url) as ws:  # the token as the first message
        await ws.send(json.dumps({"op": "auth", "token": TOKEN}))
        hello = await _next(ws, "hello")
        assert sorted(hello["data"]["symbols"]) == sorted(SYMBOLS)


async def test_snapshot_first_then_updates(stack: Stack, producer: Producer) -> None:
    first = Bias(
        session_id="d1",
        ts_event=T0,
        bias=Direction.LONG,
        shape="p_shape",
        levels=[KeyLevel("val", 99.0, 50.0, True, Direction.LONG)],
        poc=100.0,
    )
    await producer.publish(keys.stream("BTCUSDT", "bias"), first)
    ws = await _connect(stack)
    try:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["bias"], "symbols": ["BTCUSDT"]}))
        await _next(ws, "subscribed")
        snap = await _next(ws, "bias")
        assert snap["snapshot"] is True
        assert snap["seq"] == 0
        assert snap["data"]["session_id"] == "d1"
        assert snap["data"]["levels"][0]["price"] == 99.0
        second = Bias(session_id="d2", ts_event=T0 + MIN, bias=Direction.SHORT)
        await producer.publish(keys.stream("BTCUSDT", "bias"), second)
        upd = await _next(ws, "bias")
        assert (upd["snapshot"], upd["seq"], upd["data"]["session_id"]) == (False, 1, "d2")
        assert upd["data"]["bias"] == -1
        await ws.send("ping")
        assert (await _next(ws, "pong"))["data"] == {}
        await ws.send(json.dumps({"op": "subscribe", "channels": ["nope"], "symbols": ["BTCUSDT"]}))
        err = await _next(ws, "error")
        assert "unknown channel" in err["data"]["reason"]
    finally:
        await ws.close()


Got = dict[str, list[dict[str, Any]]]


async def _collect(ws: ClientConnection, want: dict[str, int], out: Got) -> None:
    """Receive until ``want[channel]`` non-snapshot messages of each channel have come."""
    while any(len(out[c]) < n for c, n in want.items()):
        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if msg["channel"] in out and not msg["snapshot"]:
            out[msg["channel"]].append(msg)


async def _until_quiet(ws: ClientConnection, out: Got, finals: int, signals: int) -> None:
    """Receive until the finals and signals are in, then until 1.5 s pass without a message
    (the last conflated tick is due within its 200 ms)."""
    while True:
        done = sum(m["data"]["final"] for m in out["candle"]) >= finals
        done = done and len(out["signal"]) >= signals
        try:
            raw = await asyncio.wait_for(ws.recv(), 1.5 if done else 30)
        except TimeoutError:
            if done:
                return
            counts = {c: len(v) for c, v in out.items()}
            finals_in = sum(m["data"]["final"] for m in out["candle"])
            raise AssertionError(f"stalled at {counts}, {finals_in} final candles") from None
        msg = json.loads(raw)
        if msg["channel"] in out and not msg["snapshot"]:
            out[msg["channel"]].append(msg)


async def test_critical_channels_arrive_whole_and_ticks_are_conflated(
    stack: Stack, producer: Producer
) -> None:
    n_bars, n_trades = 200, 3000
    clients = [await _connect(stack) for _ in range(3)]
    try:
        for ws in clients:
            await _subscribe(ws, ["candle", "signal", "tick"], ["NAS100USDT"])
        got: list[Got] = [{"candle": [], "signal": [], "tick": []} for _ in clients]
        tasks = [
            asyncio.create_task(_until_quiet(ws, g, n_bars, n_bars))
            for ws, g in zip(clients, got, strict=True)
        ]
        stream = {k: keys.stream("NAS100USDT", k) for k in ("bars", "patterns", "trades")}
        per = n_trades // n_bars
        for i in range(n_bars):
            producer.add(stream["bars"], _bar(i, final=False))
            producer.add(stream["bars"], _bar(i, final=True))
            producer.add(stream["patterns"], _signal(i))
            for j in range(per):
                producer.add(stream["trades"], _trade(i * per + j))
            await producer.flush()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for g in got:
            finals = [m for m in g["candle"] if m["data"]["final"]]
            assert [m["data"]["open_ts"] for m in finals] == [T0 + i * MIN for i in range(n_bars)]
            assert [m["seq"] for m in g["signal"]] == list(range(1, n_bars + 1))
            assert [m["data"]["signal_id"] for m in g["signal"]] == [
                f"sig-{i}" for i in range(n_bars)
            ]
            seqs = [m["seq"] for m in g["candle"]]
            assert seqs == list(range(1, len(seqs) + 1))  # nothing sent was lost
            ticks = g["tick"]
            assert 0 < len(ticks) < n_trades / 5, len(ticks)
            assert ticks[-1]["data"]["trade_id"] == f"t{n_trades - 1}"  # the latest one wins
    finally:
        for ws in clients:
            await ws.close()


async def test_a_client_that_reads_nothing_is_closed_and_the_others_get_everything(
    stack: Stack, producer: Producer
) -> None:
    n = 400
    rows = [(100.0 + k * 0.5, float(k)) for k in range(1500)]  # ~30 kB a message
    host, port = stack.url.removeprefix("http://").split(":")
    slow = RawWebSocket(host, int(port), "/ws", {"Authorization": f"Bearer {TOKEN}"})
    fast = await _connect(stack, max_size=None)
    try:
        sub = {"op": "subscribe", "channels": ["volume_profile"], "symbols": ["BTCUSDT"]}
        slow.send_text(json.dumps(sub))
        await _subscribe(fast, ["volume_profile"], ["BTCUSDT"])
        await asyncio.sleep(0.5)  # the slow client's subscription is in before the burst
        got: Got = {"volume_profile": []}
        reader = asyncio.create_task(_collect(fast, {"volume_profile": n}, got))
        key = keys.stream("BTCUSDT", "profile")
        for i in range(n):
            producer.add(
                key,
                ProfileUpdate(
                    scope="session",
                    session_id=f"s{i}",
                    session_start=T0,
                    session_end=T0 + MIN,
                    ts_event=T0 + i,
                    poc=100.0,
                    vah=101.0,
                    val=99.0,
                    volume=1.0,
                    rows=rows,
                    final=True,
                ),
            )
            if i % 20 == 19:
                await producer.flush()
                await asyncio.sleep(0.05)
        await producer.flush()
        await asyncio.wait_for(reader, 90)
        sessions = [m["data"]["session_id"] for m in got["volume_profile"]]
        assert sessions == [f"s{i}" for i in range(n)]
        assert [m["seq"] for m in got["volume_profile"]] == list(range(1, n + 1))
        frames, code, reason = await asyncio.to_thread(slow.read_until_close, 30)
        assert code == 4008
        assert "slow consumer" in reason
        assert frames < n  # it was closed before it was sent everything
    finally:
        slow.close()
        await fast.close()
