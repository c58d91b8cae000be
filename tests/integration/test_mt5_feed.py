"""The feed loop over the fake terminal in this process (NativeClient on the fake module) and a
real Redis: reconnects lose nothing, bad ticks are dead-lettered, a recording replays to exactly
what was published, and an unusable client leaves the service up and saying why."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from tests.support import fake_mt5

from of_feed_mt5 import frames
from of_feed_mt5.cursor import TickRow
from of_feed_mt5.feed import FeedConfig, Mt5Feed
from of_feed_mt5.native import NativeClient
from of_feed_mt5.outlet import Outlet
from of_feed_mt5.parser import Mt5Parser
from of_feed_mt5.service import resume_reader
from ofcommon import codec, keys
from ofcommon.bus import DeadLetters, Producer
from ofcommon.instruments import load_registry
from ofcommon.messages import BookSnapshot, Message, Trade
from ofcommon.recording import RecordingWriter, read_recording

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

OFFSET = 120
REGISTRY = load_registry()


def now_server_ms() -> int:
    return int(time.time() * 1000) + OFFSET * 60_000


def fx_script(start: int, n: int, seed: int = 1) -> list[TickRow]:
    """Quote-only ticks from ``start`` (server ms), often several in one millisecond."""
    rng = random.Random(seed)
    rows: list[TickRow] = []
    msc, bid = start, 1.10000
    for _ in range(n):
        msc += rng.choice((0, 0, 1, 3, 10))
        bid = round(bid + rng.choice((-1, 1)) * 1e-5, 5)
        rows.append((msc // 1000, bid, round(bid + 2e-5, 5), 0.0, 0, msc, 6, 0.0))
    return rows


@pytest.fixture
def terminal() -> Iterator[fake_mt5.FakeTerminal]:
    term = fake_mt5.FakeTerminal(lambda: now_server_ms())
    fake_mt5.install(term)
    yield term
    fake_mt5.install(None)


def expected_trades(instrument: str, rows: list[TickRow]) -> list[tuple[object, ...]]:
    data = frames.ticks_frame(instrument, instrument, f"{OFFSET:+d}", rows)
    return [_key(p.msg) for p in Mt5Parser(REGISTRY).parse(0, data) if isinstance(p.msg, Trade)]


def _key(t: Message) -> tuple[object, ...]:
    assert isinstance(t, Trade)
    return (t.trade_id, t.ts_event, t.price, t.side, t.size_kind)


async def read(redis: aioredis.Redis, symbol: str, kind: str) -> list[Message]:
    return [codec.decode(f[codec.FIELD]) for _i, f in await redis.xrange(keys.stream(symbol, kind))]


def make_feed(
    redis: aioredis.Redis,
    instruments: list[str],
    *,
    writer: RecordingWriter | None = None,
    resume: bool = False,
    **config: object,
) -> Mt5Feed:
    outlet = Outlet(
        parser=Mt5Parser(REGISTRY),
        producer=Producer(redis, service="feed_mt5"),
        dead_letters=DeadLetters(redis, "feed_mt5"),
        writer=writer,
    )
    cfg = FeedConfig(poll_ms=20, clock=f"{OFFSET:+d}", **config)
    return Mt5Feed(
        lambda: NativeClient(fake_mt5),
        cfg,
        [REGISTRY.get(s) for s in instruments],
        outlet,
        resume=resume_reader(redis) if resume else None,
    )


async def run_until(
    feed: Mt5Feed, done: Callable[[], Awaitable[bool]], limit_s: float = 30
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and not await done():
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_dropped_terminal_link_reconnects_without_losing_or_repeating_ticks(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis
) -> None:
    rows = fx_script(now_server_ms() + 300, 1500)
    terminal.add(fake_mt5.FakeSymbol("EURUSDm", ticks=fake_mt5.ticks(rows)))
    want = expected_trades("EURUSD", rows)
    feed = make_feed(redis, ["EURUSD"], retry_max_s=0.2)
    dropped = False

    async def done() -> bool:
        nonlocal dropped
        n = await redis.xlen(keys.stream("EURUSD", "trades"))
        if not dropped and n > 200:
            terminal.drop_link()  # every call now fails with an IPC error until initialize
            dropped = True
        trades = [m for m in await read(redis, "EURUSD", "trades") if isinstance(m, Trade)]
        return len(trades) >= len(want)

    await run_until(feed, done)
    got = [_key(m) for m in await read(redis, "EURUSD", "trades") if isinstance(m, Trade)]
    assert got == want
    assert terminal.calls["initialize"] >= 2
    assert feed.errors >= 1


async def test_bad_ticks_are_dead_lettered_and_the_rest_flows(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis
) -> None:
    rows = fx_script(now_server_ms() + 200, 50)
    rows[20] = (rows[20][0], float("nan"), 1.1, 0.0, 0, rows[20][5], 6, 0.0)
    rows[30] = (rows[30][0], -1.0, 1.1, 0.0, 0, rows[30][5], 6, 0.0)
    terminal.add(fake_mt5.FakeSymbol("EURUSDm", ticks=fake_mt5.ticks(rows)))
    feed = make_feed(redis, ["EURUSD"])

    async def done() -> bool:
        letters = await redis.xlen(keys.dead_letters("EURUSD"))
        return bool(letters >= 2 and await redis.xlen(keys.stream("EURUSD", "trades")) >= 47)

    await run_until(feed, done)
    letters = await redis.xrange(keys.dead_letters("EURUSD"))
    reasons = [f[b"reason"].decode() for _i, f in letters]
    assert reasons[0].startswith("malformed: malformed tick")
    assert reasons[1] == "malformed: non-finite or negative price or volume"
    assert {f[b"origin"] for _i, f in letters} == {keys.stream("EURUSD", "trades").encode()}
    one = msgspec.json.decode(letters[1][1][codec.FIELD])
    assert one["instrument"] == "EURUSD"
    assert one["ticks"] == [list(rows[30])]
    trades = [m for m in await read(redis, "EURUSD", "trades") if isinstance(m, Trade)]
    assert len(trades) == 47  # 50 ticks - 2 refused - the first (no previous mid)
    assert feed.status["counts"]["dead_letters"] == 2


async def test_a_recording_replays_to_exactly_what_was_published(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis, tmp_path: Path
) -> None:
    start = now_server_ms()
    rows = fx_script(start + 200, 400, seed=7)
    terminal.add(fake_mt5.FakeSymbol("EURUSDm", ticks=fake_mt5.ticks(rows)))
    books = [
        (start + 100 * i, fake_mt5.book((1, 2400.5 + i % 3, 1.0), (2, 2400.0, 2.0 + i % 2)))
        for i in range(20)
    ]
    history = fake_mt5.ticks(
        [
            (t // 1000, 2399.9 + t % 3 / 10, 2400.5, 0.0, 0, t, 6, 0.0)
            for t in range(start - 30_000, start, 499)
        ]
    )
    terminal.add(
        fake_mt5.FakeSymbol(
            "XAUUSD", ticks=history, books=books, book_depth=10, digits=2, point=0.01
        )
    )
    writer = RecordingWriter(tmp_path, "mt5", "ticks")
    feed = make_feed(redis, ["EURUSD", "XAUUSDT"], writer=writer, history_days=0.001)

    async def done() -> bool:
        trades = await redis.xlen(keys.stream("EURUSD", "trades"))
        return bool(trades > 400 and time.time() * 1000 + OFFSET * 60_000 > start + 2_200)

    await run_until(feed, done)
    writer.close()
    published = {
        (s, k): await read(redis, s, k) for s in ("EURUSD", "XAUUSDT") for k in ("trades", "book")
    }
    parser = Mt5Parser(REGISTRY)
    replayed: dict[tuple[str, str], list[Message]] = {key: [] for key in published}
    for path in writer.paths:
        for recv_ns, frame in read_recording(path):
            for p in parser.parse(recv_ns, frame):
                replayed[(p.symbol, p.kind)].append(p.msg)
    assert replayed == published
    xau_books = [m for m in published[("XAUUSDT", "book")] if isinstance(m, BookSnapshot)]
    assert 1 < len(xau_books) <= 20  # changes only, though polled every 20 ms
    xau_trades = [m for m in published[("XAUUSDT", "trades")] if isinstance(m, Trade)]
    assert xau_trades
    assert all(t.backfill for t in xau_trades)  # the 30 s of tick history before the start
    assert [p.parent for p in writer.paths] == [tmp_path]


async def test_discovery_probes_names_when_the_symbol_list_fails_and_selects_symbols(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis
) -> None:
    for name in ("US500.cash", "#NAS100", "GER40+", "EURUSD.pro"):
        terminal.add(fake_mt5.FakeSymbol(name))
    terminal.fail("symbols_get", fake_mt5.RES_E_FAIL)
    feed = make_feed(redis, ["SP500", "NAS100USDT", "DAX40", "EURUSD", "GBPUSD"])

    async def done() -> bool:
        return "symbols" in feed.status and feed.status.get("connection") == "up"

    await run_until(feed, done)
    assert feed.status["symbols"] == {
        "SP500": "US500.cash",
        "NAS100USDT": "#NAS100",
        "DAX40": "GER40+",
        "EURUSD": "EURUSD.pro",
    }
    assert feed.status["missing"] == ["GBPUSD"]
    assert all(terminal.symbols[n].selected for n in feed.status["symbols"].values())


async def test_without_tick_history_the_warm_up_uses_closed_m1_bars(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis
) -> None:
    minute = now_server_ms() // 60_000 * 60
    bars = [
        (minute - 60 * (5 - i), 10.0 + i, 11.0 + i, 9.5 + i, 10.5 + i, 8, 2, 0) for i in range(5)
    ]
    terminal.add(fake_mt5.FakeSymbol("XAUUSD", rates=fake_mt5.rates(bars), digits=2, point=0.01))
    terminal.fail("copy_ticks_from", fake_mt5.RES_E_NOT_FOUND, "Terminal: No history")
    feed = make_feed(redis, ["XAUUSDT"], history_days=0.01)

    async def done() -> bool:
        return bool(await redis.xlen(keys.stream("XAUUSDT", "trades")) >= 20)

    await run_until(feed, done)
    trades = [m for m in await read(redis, "XAUUSDT", "trades") if isinstance(m, Trade)]
    assert len(trades) == 20
    assert [t.trade_id for t in trades[:4]] == [f"bar{bars[0][0]}.{k}" for k in range(4)]


async def test_native_client_on_linux_keeps_the_feed_up_and_says_why() -> None:
    status: dict[str, object] = {}
    feed = Mt5Feed(NativeClient, FeedConfig(), [REGISTRY.get("EURUSD")], Outlet(), status=status)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    for _ in range(100):
        if status.get("connection") == "unavailable":
            break
        await asyncio.sleep(0.01)
    assert status["connection"] == "unavailable"
    assert "OF_MT5_BRIDGE_HOST" in str(status["error"])
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert str(status["connection"]) == "stopped"


async def test_a_restart_resumes_where_the_last_run_stopped(
    terminal: fake_mt5.FakeTerminal, redis: aioredis.Redis
) -> None:
    start = now_server_ms()
    history = fx_script(start - 30_000, 1000, seed=5)
    live = fx_script(start + 300, 800, seed=6)
    rows = history + live
    terminal.add(fake_mt5.FakeSymbol("EURUSDm", ticks=fake_mt5.ticks(rows)))
    want = expected_trades("EURUSD", rows)
    first_live = live[0][5]

    async def trades() -> list[Trade]:
        return [m for m in await read(redis, "EURUSD", "trades") if isinstance(m, Trade)]

    async def part_of_the_live_ticks() -> bool:
        return sum(not t.backfill for t in await trades()) > 200

    await run_until(
        make_feed(redis, ["EURUSD"], resume=True, history_days=0.01), part_of_the_live_ticks
    )
    before = len(await trades())

    async def all_ticks() -> bool:
        return {t.trade_id for t in await trades()} >= {w[0] for w in want}

    await run_until(make_feed(redis, ["EURUSD"], resume=True, history_days=0.01), all_ticks)
    published = await trades()
    ids = [t.trade_id for t in published]
    assert set(ids) == {w[0] for w in want}  # nothing lost across the restart
    again = ids[before:]
    # The second run started about a second before the first run's last tick, not 30 s back.
    assert all(int(i.split(".")[0]) >= first_live for i in again)
    assert len(ids) - len(set(ids)) < 400  # the overlap, dropped downstream by trade id
