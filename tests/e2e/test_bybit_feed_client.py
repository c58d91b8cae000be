"""The Bybit connection manager, REST client and recorder in-process against the fake venue.

Subscribe batching and refusals, every pong shape, reconnect backoff, REST paging, tick checks
and rate limits, and raw recording, each over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.support.fake_bybit import (
    BookTimeline,
    FakeBybit,
    binance_timelines,
    instrument_row,
    load_book_frames,
)

from of_feed_bybit.client import BybitClient, ClientOptions, Outbox
from of_feed_bybit.parser import BybitParser
from of_feed_bybit.recorder import record
from of_feed_bybit.rest import BybitRest, RateLimited, RestError, check_instruments
from of_feed_bybit.venue import VENUE
from ofcommon.clock import LiveClock
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Gap
from ofcommon.recording import parse_name, read_recording
from ofcommon.venue import RecordOptions


def _inst(symbol: str, category: str, venue: str, tick: float = 0.01) -> Instrument:
    raw = {
        "symbol": symbol,
        "group": "crypto",
        "tick_size": tick,
        "row_size": tick * 10,
        "session": "FULL_DAY",
        "bybit": {"category": category, "symbol": venue},
    }
    return msgspec.convert(raw, Instrument)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(client: BybitClient) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


async def until(check: Any, within: float = 10.0) -> None:
    """Poll a condition (the client exposes plain counters, not events)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def _client(
    fake_url: str,
    category: str,
    instruments: Sequence[Instrument],
    options: ClientOptions,
    outbox: Outbox | None = None,
) -> BybitClient:
    registry = Registry(instruments)
    cat = "spot" if category == "spot" else "linear"
    return BybitClient(
        url=fake_url,
        category=category,
        parser=BybitParser(cat, registry),
        instruments=list(registry),
        clock=LiveClock(),
        options=options,
        outbox=outbox,
    )


async def test_spot_subscribes_in_tens_and_parks_a_refused_topic() -> None:
    good = [_inst(f"S{i}", "spot", f"S{i}USDT") for i in range(11)]
    bad = _inst("NOPE", "spot", "NOPEUSDT")  # not listed on the venue
    rows = [instrument_row(f"S{i}USDT", "0.01", "0.01", category="spot") for i in range(11)]
    async with FakeBybit(instruments={"spot": rows}) as fake:
        client = _client(
            fake.ws_url, "spot", [*good, bad], ClientOptions(ack_timeout_s=2.0), Outbox(1000)
        )
        async with running(client):
            await until(lambda: len(client.status()["failed_topics"]) == 2)
            await asyncio.sleep(0.5)  # a tight retry loop would show up here
            subs = [req for _, req in fake.requests if req.get("op") == "subscribe"]
            assert all(len(req["args"]) <= 10 for req in subs)
            tries = [req for req in subs if "publicTrade.NOPEUSDT" in req["args"]]
            assert len(tries) == 2  # the refused batch, then alone; nothing more for 300 s
            assert len(fake.subscribed("spot")) == 22
            status = client.status()
            assert status["failed_topics"] == ["orderbook.50.NOPEUSDT", "publicTrade.NOPEUSDT"]
            assert status["counters"]["subscribe_failures"] >= 3
            assert status["counters"]["malformed"] == 0


async def test_every_pong_shape_is_a_pong() -> None:
    inst = _inst("XRPUSDT", "linear", "XRPUSDT", tick=0.0001)
    book = BookTimeline("linear", load_book_frames())
    async with FakeBybit(books=[book], pong_shape="cycle") as fake:
        opts = ClientOptions(ping_interval_s=0.05, conn_silence_s=5.0)
        client = _client(fake.ws_url, "linear", [inst], opts, Outbox(1000))
        async with running(client):
            await until(lambda: client.counters["pongs"] >= 6)
        assert client.counters["malformed"] == 0
        assert client.counters["reconnects"] == 0
        pings = [req for _, req in fake.requests if req.get("op") == "ping"]
        assert all(set(req) == {"req_id", "op"} for req in pings)


async def test_reconnects_with_backoff_until_the_venue_answers() -> None:
    port = _free_port()
    inst = _inst("XRPUSDT", "linear", "XRPUSDT", tick=0.0001)
    opts = ClientOptions(backoff_initial_s=0.05, backoff_max_s=0.2, open_timeout_s=1.0)
    client = _client(f"ws://127.0.0.1:{port}/v5/public", "linear", [inst], opts, Outbox(1000))
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await until(lambda: client.counters["connect_failures"] >= 3)
        assert client.state in ("backoff", "connecting")
        book = BookTimeline("linear", load_book_frames())
        async with FakeBybit(books=[book], port=port) as fake:
            await until(lambda: len(fake.subscribed("linear")) == 2)
            await until(lambda: client.parser.counters["snapshots"] == 1)
            fake.drop_connections()
            await until(lambda: client.counters["connects"] == 2)
            await until(lambda: client.parser.counters["snapshots"] == 2)
            stop.set()
            await task
    finally:
        stop.set()
        await task
    assert client.reconnect_reasons == {"closed": 1}
    assert client.state == "stopped"
    gaps = [p.msg for p in client.outbox.take(1000) if isinstance(p.msg, Gap)]
    # the drop, then the clean stop: each marks both streams of the instrument
    assert [g.stream for g in gaps] == ["book", "trades", "book", "trades"]


async def test_rest_pages_checks_ticks_and_respects_rate_limits() -> None:
    trades, _ = binance_timelines("spot", frames=300, trades_per_frame=1, book=False)
    rows = [instrument_row(f"A{i}USDT", "0.01", "1") for i in range(5)]
    rows.append(instrument_row("XAUUSDT", "0.1", "0.01"))
    registry = load_registry()
    async with FakeBybit(
        trades=[trades],
        instruments={"linear": rows, "spot": [instrument_row("BTCUSDT", "0.01", "0.0001")]},
        page_size=2,
        interval_s=0.001,
    ) as fake:
        fake.start_market()
        await fake.wait_market_done()
        rest = BybitRest(fake.rest_url, retries=2, backoff_s=0.01, rate_limit_cooldown_s=30)
        async with rest:
            infos = await rest.instruments("linear")
            assert [i.symbol for i in infos] == [r["symbol"] for r in rows]
            assert sum("instruments-info" in t for t in fake.rest_log) == 3  # 2 + 2 + 2
            mismatch = {m.symbol: m for m in check_instruments(registry.all(), infos)}
            assert mismatch["XAUUSDT"].problem == "tick_size"
            assert mismatch["XAUUSDT"].on_grid  # venue 0.1 is a multiple of the registry's 0.01
            assert mismatch["BTCUSDT"].problem == "not_listed"
            spot = await rest.instruments("spot")
            assert str(spot[0].qty_step) == "0.0001"  # spot's basePrecision

            recent = await rest.recent_trades("spot", "BTCUSDT", limit=500)
            assert len(recent) == 60  # spot reaches back 60 trades at most
            assert recent[0]["execId"] == trades.all_ids[-1]  # newest first

            fake.fail_rest(1, 502, "bad gateway")
            assert len(await rest.recent_trades("spot", "BTCUSDT")) == 60  # retried

            fake.fail_rest(1, 403)
            with pytest.raises(RateLimited):
                await rest.recent_trades("spot", "BTCUSDT")
            asked = len(fake.rest_log)
            with pytest.raises(RateLimited):
                await rest.instruments("spot")
            assert len(fake.rest_log) == asked  # the cool-down keeps us off the network
            assert rest.rate_limited_for_s > 20
        async with BybitRest(fake.rest_url, retries=0) as rest:
            with pytest.raises(RestError, match="retCode 10001"):
                await rest._get("/v5/market/recent-trade", {"category": "spot", "limit": 0}, "x")


async def test_record_writes_every_frame_as_received_and_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = BookTimeline("linear", load_book_frames())
    registry = Registry([_inst("XRPUSDT", "linear", "XRPUSDT", tick=0.0001)])
    async with FakeBybit(books=[book], interval_s=0.01, keep_sent=True) as fake:
        monkeypatch.setenv("OF_BYBIT_WS_URL", fake.ws_url)
        monkeypatch.setenv("OF_BYBIT_PING_INTERVAL_S", "0.2")
        monkeypatch.setenv("OF_RECORD_ROTATE_S", "0.3")
        fake.start_market()
        stop = asyncio.Event()
        options = RecordOptions("linear", tmp_path, 1.5, registry)
        paths = await record(options, stop)
        assert fake.sent is not None
        sent = [text.encode() for _, text in fake.sent]
    assert VENUE.record is record
    assert len(paths) >= 2  # rotated
    assert all(parse_name(p) == ("bybit", "linear") for p in paths)
    frames = [frame for p in paths for _, frame in read_recording(p)]
    assert frames == sent  # byte for byte, in order, acks and pongs included
    decoded = [json.loads(f) for f in frames]
    assert any(d.get("ret_msg") == "pong" for d in decoded)
    assert any(d.get("op") == "subscribe" and d["success"] for d in decoded)
    assert [d.get("type") for d in decoded if "topic" in d].count("snapshot") == 1
    stamps = [ns for p in paths for ns, _ in read_recording(p)]
    assert stamps == sorted(stamps)


async def test_ofx_record_cli(tmp_path: Path) -> None:
    """``ofx record --venue bybit`` finds the recorder through the venue entry point."""
    registry = tmp_path / "instruments.toml"
    registry.write_text(
        '[instruments.XRPUSDT]\ngroup = "crypto"\ntick_size = 0.0001\nrow_size = 0.01\n'
        'session = "FULL_DAY"\nbybit = { category = "linear", symbol = "XRPUSDT" }\n'
    )
    book = BookTimeline("linear", load_book_frames())
    async with FakeBybit(books=[book], interval_s=0.005) as fake:
        fake.start_market()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
        env |= {
            "OF_BYBIT_WS_URL": fake.ws_url,
            "OF_REGISTRY_FILE": str(registry),
            "OF_INSTRUMENTS": "XRPUSDT",
            "OF_LOG_FORMAT": "text",
        }
        out = tmp_path / "rec"
        argv = ["record", "--venue", "bybit", "--category", "linear", "--out", str(out)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ofcommon.cli",
            *argv,
            "--duration",
            "1.5",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    paths = [Path(line) for line in stdout.decode().split()]
    assert paths
    assert all(p.parent == out and p.exists() for p in paths)
    frames = [json.loads(f) for p in paths for _, f in read_recording(p)]
    topics = {f.get("topic") for f in frames} - {None}
    assert topics == {"orderbook.50.XRPUSDT"}
    assert next(f for f in frames if f.get("op") == "subscribe")["success"] is True
