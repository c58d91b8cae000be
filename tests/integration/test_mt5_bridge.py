"""The bridge client against a real RPyC classic server (a subprocess serving the fake
MetaTrader5), and the whole feed through it into a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.support import fake_mt5, fake_mt5_data as data
from tests.support.fake_mt5_server import control, serve

from of_feed_mt5 import constants, frames
from of_feed_mt5.bridge import BridgeClient, check_symbol_name
from of_feed_mt5.client import BookLevel, Mt5ConnectionError, Mt5Error
from of_feed_mt5.parser import Mt5Parser
from of_feed_mt5.service import Mt5Settings, main
from of_feed_mt5.venue import VENUE
from ofcommon import codec, keys
from ofcommon.instruments import Registry, load_registry
from ofcommon.messages import BookSnapshot, Heartbeat, Message, Quote, SideSource, SizeKind, Trade
from ofcommon.recording import read_recording
from ofcommon.service import ServiceContext
from ofcommon.settings import Secret
from ofcommon.venue import RecordOptions

NOW = 1_723_161_255_000


@pytest.fixture(scope="module")
def bridge() -> Iterator[tuple[int, Any]]:
    """(port, control connection) of a fake-MT5 bridge shared by the module's tests."""
    with serve() as port:
        ctl = control(port)
        try:
            yield port, ctl
        finally:
            ctl.close()


def _connected(client: BridgeClient) -> bool:
    return client.connected  # a call, so the type checker does not pin an earlier answer


def install_small(ctl: Any, **account: Any) -> Any:
    fm = ctl.modules["tests.support.fake_mt5"]
    term = fm.small_terminal(NOW, **account)
    fm.install(term)
    return term


def test_the_bridge_speaks_the_package_api(bridge: tuple[int, Any]) -> None:
    port, ctl = bridge
    term = install_small(ctl, login=7, password="p'w\"); import os #", server="Srv")
    client = BridgeClient("127.0.0.1", port, timeout_s=10)
    assert client.last_error() == (-10004, "bridge not connected")
    assert client.initialize(timeout=1000)
    assert client.connected
    assert client.COPY_TICKS_ALL == constants.COPY_TICKS_ALL
    # The password travels as a value: quotes and code in it are just characters.
    assert client.login(7, password="p'w\"); import os #", server="Srv")
    assert not client.login(7, password="nope", server="Srv")
    assert client.last_error()[0] == fake_mt5.RES_E_AUTH_FAILED
    listed = client.symbols_get("*USD*")
    assert listed is not None
    assert [s.name for s in listed] == ["EURUSDm"]
    info = client.symbol_info("EURUSDm")
    assert info is not None
    assert (info.description, info.ticks_bookdepth, info.time) == ("Euro", 5, NOW // 1000 - 1)
    assert client.symbol_select("EURUSDm")
    when = datetime.fromtimestamp(NOW / 1000 - 2, UTC)
    ticks = client.copy_ticks_from("EURUSDm", when, 100, client.COPY_TICKS_ALL)
    assert ticks is not None
    assert ticks.dtype == constants.TICK_DTYPE
    assert ticks["time_msc"].tolist() == [NOW - 1000, NOW - 1000, NOW - 999, NOW - 999, NOW - 998]
    rates = client.copy_rates_range("EURUSDm", 1, when.replace(minute=0), when)
    assert rates is not None
    assert rates.dtype == constants.RATE_DTYPE
    assert client.market_book_add("EURUSDm")
    assert client.market_book_get("EURUSDm") == (
        BookLevel(1, 1.3, 1, 1.0),
        BookLevel(1, 1.2, 2, 2.5),
        BookLevel(2, 1.1, 1, 1.25),
    )
    assert client.market_book_release("EURUSDm")
    assert client.symbol_info("NOPE") is None
    assert client.last_error()[0] == fake_mt5.RES_E_NOT_FOUND
    client.shutdown()
    assert not _connected(client)
    assert term.connected is False


@pytest.mark.parametrize(
    "name", ['EURUSD"); __import__("os").system("id"); ("', "EUR USD", "a" * 65, "x\\n", "(1)"]
)
def test_symbol_names_are_whitelisted_before_any_code_is_built(
    bridge: tuple[int, Any], name: str
) -> None:
    port, ctl = bridge
    term = install_small(ctl)
    client = BridgeClient("127.0.0.1", port, timeout_s=10)
    assert client.initialize()
    before = term.calls["symbol_info"]
    with pytest.raises(Mt5Error, match="refusing symbol name"):
        client.symbol_info(name)
    with pytest.raises(Mt5Error, match="refusing"):
        client.copy_ticks_from(name, datetime.now(UTC), 1, -1)
    assert term.calls["symbol_info"] == before
    assert check_symbol_name("#NAS100") == "#NAS100"
    client.shutdown()


def test_naive_datetimes_are_refused_before_the_wire(bridge: tuple[int, Any]) -> None:
    port, ctl = bridge
    install_small(ctl)
    client = BridgeClient("127.0.0.1", port, timeout_s=10)
    client.initialize()
    with pytest.raises(Mt5Error, match="naive"):
        client.copy_ticks_from("EURUSDm", datetime(2024, 1, 1), 1, -1)  # noqa: DTZ001
    client.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_lost_bridge_is_a_connection_error_and_initialize_reconnects() -> None:
    client = BridgeClient("127.0.0.1", _free_port(), timeout_s=5)
    with pytest.raises(Mt5ConnectionError, match="unreachable"):
        client.initialize()
    with serve() as port:
        ctl = control(port)
        try:
            install_small(ctl)
            client = BridgeClient("127.0.0.1", port, timeout_s=5)
            assert client.initialize()
            assert client.symbol_info("EURUSDm") is not None
        finally:
            ctl.close()
    # The server is gone now.
    with pytest.raises(Mt5ConnectionError):
        client.symbol_info("EURUSDm")
    assert not client.connected
    assert client.last_error()[0] == -10004


# --- the whole feed through the bridge into Redis ----------------------------------------------


def _decode_stream(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Message]:
    return [codec.decode(fields[codec.FIELD]) for _id, fields in entries]


async def _read(redis: aioredis.Redis, symbol: str, kind: str) -> list[Message]:
    return _decode_stream(await redis.xrange(keys.stream(symbol, kind)))


def _key(t: Trade) -> tuple[object, ...]:
    return (t.trade_id, t.ts_event, t.price, t.size, t.side, t.side_source, t.size_kind)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_feed_through_the_bridge_publishes_exactly_the_terminal_ticks(
    bridge: tuple[int, Any], redis: aioredis.Redis, tmp_path: Path
) -> None:
    port, ctl = bridge
    pivot = int(time.time() * 1000) + 2_500
    data.eurusd_quotes()  # skip here, not on the bridge, when the real data is absent
    ctl.modules["tests.support.fake_mt5_data"].install_demo(pivot, 120)
    demo = data.demo_script(pivot, 120)
    registry = load_registry()
    expected_fx = [
        p.msg
        for p in Mt5Parser(registry).parse(0, _frame("EURUSD", demo.eurusd))
        if isinstance(p.msg, Trade)
    ]
    expected_btc = _terminal_trades(registry, "BTCUSDT", demo.btc.ticks)
    # Both are Bybit's by default (one source per instrument): this run has no Bybit feed.
    mt5_sourced = tmp_path / "instruments.toml"
    mt5_sourced.write_text(
        '[instruments.BTCUSDT]\nsource = "mt5"\n[instruments.XAUUSDT]\nsource = "mt5"\n'
    )
    settings = Mt5Settings(
        mt5_bridge_host="127.0.0.1",
        mt5_bridge_port=port,
        mt5_login=data.DEMO_LOGIN,
        mt5_password=Secret(data.DEMO_PASSWORD),
        mt5_server=data.DEMO_SERVER,
        mt5_poll_ms=25,
        mt5_history_days=0.05,
        instruments="EURUSD,BTCUSDT,XAUUSDT,EURGBP",
        registry_file=str(mt5_sourced),
    )
    stop = asyncio.Event()
    ctx: ServiceContext[Mt5Settings] = ServiceContext(
        name="feed_mt5", settings=settings, redis=redis, worker_id="t", stop=stop
    )
    task = asyncio.create_task(main(ctx))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # count trades, not entries: heartbeats and gap markers share the streams
            counts = [
                sum(isinstance(m, Trade) for m in await _read(redis, s, "trades"))
                for s in ("EURUSD", "BTCUSDT", "XAUUSDT")
            ]
            if (
                counts[0] >= len(expected_fx)
                and counts[1] >= len(expected_btc)
                and counts[2] >= 120
            ):
                break
            assert not task.done(), task
            await asyncio.sleep(0.2)
        status = dict(ctx.status)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert status["connection"] == "up"
    assert status["client"] == f"bridge 127.0.0.1:{port}"
    assert status["clock"] == "+120"  # detected from a live quote
    assert status["symbols"] == data.DEMO_SYMBOLS
    assert status["missing"] == ["EURGBP"]  # EURGBP.x is no variant we know
    assert status["book"] == ["BTCUSDT"]

    fx = await _read(redis, "EURUSD", "trades")
    fx_trades = [m for m in fx if isinstance(m, Trade)]
    assert [_key(t) for t in fx_trades] == [_key(t) for t in expected_fx]  # none lost, none twice
    assert all(t.size_kind is SizeKind.TICKS and t.size == 1.0 for t in fx_trades)
    history = [t for t in fx_trades if t.backfill]
    # Quotes before the feed's start come as history, the rest live; where the split falls
    # depends on how long the start took (wall clock), so only that both parts exist is fixed.
    assert 0 < len(history) < len(fx_trades)
    assert fx_trades[: len(history)] == history
    beats = [m for m in fx if isinstance(m, Heartbeat)]
    assert beats
    assert [b.ts_event for b in beats] == sorted(b.ts_event for b in beats)
    fx_quotes = [m for m in await _read(redis, "EURUSD", "book") if isinstance(m, Quote)]
    live = {t.trade_id for t in fx_trades if not t.backfill}
    changed = _quote_changes(demo.eurusd)
    assert [(q.bid, q.ask) for q in fx_quotes] == [q for tid, q in changed if tid in live]

    btc = [m for m in await _read(redis, "BTCUSDT", "trades") if isinstance(m, Trade)]
    assert [_key(t) for t in btc] == [_key(t) for t in expected_btc]
    sources = {t.side_source for t in btc}
    assert {SideSource.EXCHANGE, SideSource.TICK_RULE} <= sources  # flags mixed per trade
    assert all(t.side == demo.btc.truth[t.trade_id] for t in btc if t.side_source == 0)
    books = [m for m in await _read(redis, "BTCUSDT", "book") if isinstance(m, BookSnapshot)]
    assert len(books) > 10
    assert [b.seq for b in books] == list(range(1, len(books) + 1))
    assert all((a.bids, a.asks) != (b.bids, b.asks) for a, b in itertools.pairwise(books))
    assert all(len(b.bids) == len(b.asks) == 1 for b in books)

    xau = [m for m in await _read(redis, "XAUUSDT", "trades") if isinstance(m, Trade)]
    assert len(xau) == 120  # 30 closed M1 bars, four prints each
    assert all(t.backfill and t.trade_id.startswith("bar") for t in xau)
    assert sum(t.size for t in xau) == sum(int(r["tick_volume"]) for r in demo.xau_rates)
    assert await redis.xlen(keys.dead_letters("EURUSD")) == 0


def _quote_changes(ticks: Any) -> list[tuple[str, tuple[float, float]]]:
    """(trade id, quote) of each tick whose bid/ask differs from the tick before."""
    out, prev, ms, n = [], None, -1, 0
    for row in ticks.tolist():
        msc = row[5]
        n = n + 1 if msc == ms else 0
        ms = msc
        quote = (round(row[1], 5), round(row[2], 5))
        if quote != prev:
            out.append((f"{msc}.{n}", quote))
        prev = quote
    return out


def _frame(instrument: str, ticks: Any) -> bytes:
    return frames.ticks_frame(instrument, data.DEMO_SYMBOLS[instrument], "+120", ticks.tolist())


# The fake terminal's own tick where it differs from the registry's (BTCUSD: 0.01, the registry
# 0.10): the feed sends the symbol frame first and prices snap to the terminal's tick.
_TERMINAL_TICK = {"BTCUSDT": 0.01}


def _terminal_trades(registry: Registry, instrument: str, ticks: Any) -> list[Trade]:
    parser = Mt5Parser(registry)
    if instrument in _TERMINAL_TICK:
        tick = _TERMINAL_TICK[instrument]
        symbol = frames.SymbolFrame(
            instrument=instrument,
            symbol=data.DEMO_SYMBOLS[instrument],
            clock="+120",
            point=tick,
            tick_size=tick,
        )
        parser.parse(0, frames.encode(symbol))
    return [p.msg for p in parser.parse(0, _frame(instrument, ticks)) if isinstance(p.msg, Trade)]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_ofx_record_captures_frames_that_replay_to_the_terminal_ticks(
    bridge: tuple[int, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ctl = bridge
    pivot = int(time.time() * 1000) + 1_500
    data.eurusd_quotes()
    ctl.modules["tests.support.fake_mt5_data"].install_demo(pivot, 120)
    demo = data.demo_script(pivot, 120)
    env = {
        "OF_MT5_BRIDGE_HOST": "127.0.0.1",
        "OF_MT5_BRIDGE_PORT": str(port),
        "OF_MT5_LOGIN": str(data.DEMO_LOGIN),
        "OF_MT5_PASSWORD": data.DEMO_PASSWORD,
        "OF_MT5_SERVER": data.DEMO_SERVER,
        "OF_MT5_POLL_MS": "25",
        "OF_MT5_HISTORY_DAYS": "0.05",
        "OF_MT5_SERVER_TZ": "Etc/GMT-2",  # a zone spelling of UTC+2, recorded in every frame
        "OF_INSTRUMENTS": "EURUSD,BTCUSDT",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    registry = load_registry()
    last_utc = max(int(demo.eurusd["time_msc"][-1]), int(demo.btc.ticks["time_msc"][-1]))
    last_utc -= 120 * 60_000
    options = RecordOptions("ticks", tmp_path, (last_utc - time.time() * 1000) / 1000 + 3, registry)
    paths = await VENUE.record(options, asyncio.Event())
    assert paths
    assert all(p.name.startswith("mt5-ticks-") for p in paths)
    parser = VENUE.parser("ticks", registry)
    trades: dict[str, list[Trade]] = {"EURUSD": [], "BTCUSDT": []}
    for path in paths:
        for recv_ns, frame in read_recording(path):
            for p in parser.parse(recv_ns, frame):
                if isinstance(p.msg, Trade):
                    trades[p.symbol].append(p.msg)
    for inst, ticks in (("EURUSD", demo.eurusd), ("BTCUSDT", demo.btc.ticks)):
        want = [_key(t) for t in _terminal_trades(registry, inst, ticks)]
        assert [_key(t) for t in trades[inst]] == want
