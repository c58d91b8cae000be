"""The Bybit feed as a process against a real Redis and a fake Bybit on loopback, under faults.

Every fault must leave the feed running, the published data right (books equal to the venue's,
every trade exactly once) and the fault visible in metrics, health status or dead letters.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.support.fake_bybit import (
    BookTimeline,
    FakeBybit,
    TradeTimeline,
    binance_timelines,
    instrument_row,
    load_book_frames,
)
from tests.support.servers import free_port, metric_sum, scrape_metrics, spawn_service, stop

from ofcommon import codec, keys
from ofcommon.messages import (
    BookDelta,
    BookSnapshot,
    Gap,
    Heartbeat,
    InstrumentSpec,
    Message,
    Trade,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

WORKER = "bybit-e2e"
DEPTH = 50
REGISTRY = """
[instruments.XRPUSDT]
group = "crypto"
tick_size = 0.0001
row_size = 0.01
session = "FULL_DAY"
bybit = { category = "linear", symbol = "XRPUSDT" }

[instruments.BTCSPOT]
group = "crypto"
tick_size = 0.01
row_size = 10.0
session = "FULL_DAY"
bybit = { category = "spot", symbol = "BTCUSDT" }
"""
INSTRUMENTS = {
    "linear": [
        instrument_row("BTCUSDT", "0.50", "0.001"),  # registry says 0.10: reported, on grid
        instrument_row("XRPUSDT", "0.0001", "1"),
        *(instrument_row(f"FILL{i}USDT", "0.01", "1") for i in range(5)),  # forces pages
    ],
    "spot": [instrument_row("BTCUSDT", "0.01", "0.000001", category="spot")],
}
Levels = list[tuple[float, float]]


@dataclass
class Feed:
    """A running feed process and what a test needs to look at it."""

    proc: subprocess.Popen[bytes]
    redis: aioredis.Redis
    fake: FakeBybit
    metrics_port: int
    log: Path

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    async def metrics(self) -> str:
        return await asyncio.to_thread(scrape_metrics, self.metrics_port)

    async def health(self) -> dict[str, Any]:
        raw = await self.redis.get(keys.health("feed_bybit", WORKER))
        return json.loads(raw) if raw else {}

    async def messages(self, symbol: str, kind: str) -> list[Message]:
        entries = await self.redis.xrange(keys.stream(symbol, kind))
        return [codec.decode(fields[b"d"]) for _, fields in entries]

    async def trade_ids(self, symbol: str) -> list[str]:
        return [m.trade_id for m in await self.messages(symbol, "trades") if isinstance(m, Trade)]

    async def book(self, symbol: str) -> tuple[Levels, Levels] | None:
        return rebuild_book(await self.messages(symbol, "book"))

    async def until(self, what: str, check: Callable[[], Any], within: float = 20.0) -> Any:
        """Poll an async ``check`` until it returns something truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            assert self.proc.poll() is None, f"the feed died\n{self.log_tail()}"
            value = await check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")
            await asyncio.sleep(0.1)


def rebuild_book(msgs: list[Message]) -> tuple[Levels, Levels] | None:
    """A consumer's book from the stream: snapshot, contiguous deltas, nothing across a gap."""
    bids: dict[float, float] | None = None
    asks: dict[float, float] = {}
    last = 0
    for m in msgs:
        if isinstance(m, BookSnapshot):
            bids, asks, last = dict(m.bids), dict(m.asks), m.seq
        elif isinstance(m, BookDelta):
            assert bids is not None, "a delta without a snapshot before it"
            assert m.seq == last + 1, f"delta seq {m.seq} after {last}"
            for side, levels in ((bids, m.bids), (asks, m.asks)):
                for price, size in levels:
                    if size == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
            last = m.seq
        elif isinstance(m, Gap) and m.stream == "book":
            bids, asks, last = None, {}, 0
    if bids is None:
        return None
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def _reference(book: BookTimeline) -> tuple[Levels, Levels]:
    return book.reference(DEPTH)


@pytest.fixture
async def market() -> AsyncIterator[FakeBybit]:
    btc_trades, btc_book = binance_timelines("linear", frames=2000, trades_per_frame=3)
    spot_trades, _ = binance_timelines(
        "spot", skip=2000, frames=800, trades_per_frame=1, book=False
    )
    assert btc_book is not None
    fake = FakeBybit(
        books=[BookTimeline("linear", load_book_frames()), btc_book],
        trades=[btc_trades, spot_trades],
        instruments=INSTRUMENTS,
        interval_s=0.01,
        page_size=2,
    )
    async with fake:
        yield fake


def _env(service_env: dict[str, str], tmp_path: Path, fake: FakeBybit, port: int) -> dict[str, str]:
    registry = tmp_path / "instruments.toml"
    registry.write_text(REGISTRY)
    return {
        **service_env,
        "OF_WORKER_ID": WORKER,
        "OF_REGISTRY_FILE": str(registry),
        "OF_INSTRUMENTS": "BTCUSDT,XRPUSDT,BTCSPOT",
        "OF_METRICS_PORT": str(port),
        "OF_HEALTH_TTL_S": "3",
        "OF_BYBIT_WS_URL": fake.ws_url,
        "OF_BYBIT_REST_URL": fake.rest_url,
        "OF_BYBIT_DEPTH": str(DEPTH),
        "OF_BYBIT_PING_INTERVAL_S": "0.5",
        "OF_BYBIT_CONN_SILENCE_S": "5",
        "OF_BYBIT_BACKOFF_INITIAL_S": "0.1",
        "OF_BYBIT_BACKOFF_MAX_S": "0.5",
        "OF_BYBIT_BACKFILL_DELAY_S": "0.05",
        "OF_BYBIT_HEARTBEAT_S": "0.5",
        "OF_BYBIT_REST_RETRIES": "1",
    }


@pytest.fixture
async def start_feed(
    market: FakeBybit, redis: aioredis.Redis, service_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    procs: list[subprocess.Popen[bytes]] = []

    async def start(**extra: str) -> Feed:
        port = free_port()
        env = {**_env(service_env, tmp_path, market, port), **extra}
        proc = spawn_service("feed_bybit", env, tmp_path, "feed")
        procs.append(proc)
        feed = Feed(proc, redis, market, port, tmp_path / "feed.log")
        want = {"linear": 4, "spot": 2}

        async def subscribed() -> bool:
            return all(len(market.subscribed(c)) == n for c, n in want.items())

        await feed.until("every topic subscribed", subscribed)
        return feed

    yield start
    for proc in procs:
        await asyncio.to_thread(stop, proc)


async def _settle(feed: Feed, symbols: dict[str, tuple[str, TradeTimeline]]) -> None:
    """Wait until every book equals the venue's and every trade arrived."""
    fake = feed.fake
    await fake.wait_market_done()

    async def books_equal() -> bool:
        for (_, symbol), book in fake.books.items():
            if await feed.book(symbol) != _reference(book):
                return False
        return True

    async def trades_complete() -> bool:
        for symbol, (_, tl) in symbols.items():
            if set(await feed.trade_ids(symbol)) != set(tl.all_ids):
                return False
        return True

    await feed.until("books equal to the venue's", books_equal)
    await feed.until("every trade published", trades_complete)


async def test_feed_survives_faults_and_publishes_the_venue(start_feed: Any) -> None:
    feed: Feed = await start_feed()
    fake, r = feed.fake, feed.redis
    linear_trades = fake.trades[("linear", "BTCUSDT")]
    spot_trades = fake.trades[("spot", "BTCUSDT")]
    fake.start_market()

    await fake.wait_steps(20)
    fake.lose_book_updates("linear", "XRPUSDT")  # the real Bybit capture, with a `u` hole
    await fake.wait_steps(40)
    fake.lose_book_updates("linear", "BTCUSDT", 2)
    await fake.wait_steps(40)
    fake.restart_book("linear", "BTCUSDT")  # u = 1
    await fake.wait_steps(40)
    bad_json = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{'
    bad_price = (
        '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"cts":1,'
        '"data":{"s":"BTCUSDT","b":[["abc","1"]],"a":[],"u":7,"seq":1}}'
    )
    garbage = "this is not json"
    unknown = '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{"symbol":"BTCUSDT"}}'
    for text in (bad_json, bad_price, garbage, unknown):
        assert fake.send_raw("linear", text) == 1
    await fake.wait_steps(60)
    assert fake.drop_connections("linear") == 1  # abrupt: no close frame
    await fake.wait_steps(100)
    assert fake.drop_connections("spot") == 1

    await _settle(feed, {"BTCUSDT": ("linear", linear_trades), "BTCSPOT": ("spot", spot_trades)})
    assert feed.proc.poll() is None

    # every trade exactly once, some of them recovered from REST after the reconnects
    for symbol, tl in (("BTCUSDT", linear_trades), ("BTCSPOT", spot_trades)):
        trades = [m for m in await feed.messages(symbol, "trades") if isinstance(m, Trade)]
        ids = [t.trade_id for t in trades]
        assert len(ids) == len(set(ids)), f"{symbol}: duplicated trades"
        assert set(ids) == set(tl.all_ids)
        assert any(t.backfill for t in trades), f"{symbol}: nothing came from the backfill"
        gaps = [m for m in await feed.messages(symbol, "trades") if isinstance(m, Gap)]
        assert any(g.reason.startswith("connection lost") for g in gaps)

    # the book gaps are marked where they happened
    book_gaps = [m for m in await feed.messages("BTCUSDT", "book") if isinstance(m, Gap)]
    assert any("u jumped" in g.reason for g in book_gaps)
    xrp_gaps = [m for m in await feed.messages("XRPUSDT", "book") if isinstance(m, Gap)]
    assert any("u jumped" in g.reason for g in xrp_gaps)

    # the venue's facts (instruments-info) before the first trade, and again after the reconnect
    for symbol, tick, step in (("BTCUSDT", 0.50, 0.001), ("BTCSPOT", 0.01, 0.000001)):
        msgs = await feed.messages(symbol, "trades")
        specs = [m for m in msgs if isinstance(m, InstrumentSpec)]
        assert len(specs) >= 2, symbol  # at start and on the reconnect
        assert {(s.tick_size, s.size_step) for s in specs} == {(tick, step)}
        first_trade = next(i for i, m in enumerate(msgs) if isinstance(m, Trade))
        assert isinstance(msgs[0], InstrumentSpec), symbol
        assert first_trade > 0

    # heartbeats on every stream, venue time never going back
    for symbol in ("BTCUSDT", "XRPUSDT", "BTCSPOT"):
        beats = [m for m in await feed.messages(symbol, "book") if isinstance(m, Heartbeat)]
        assert beats, symbol
        assert all(a.ts_event <= b.ts_event for a, b in itertools.pairwise(beats))

    # malformed frames are dead letters with the reason and the raw frame
    global_dlq = await r.xrange(keys.dead_letters(None))
    assert [f[b"d"] for _, f in global_dlq] == [garbage.encode()]
    assert global_dlq[0][1][b"reason"].startswith(b"malformed: not JSON")
    btc_dlq = {f[b"d"]: f for _, f in await r.xrange(keys.dead_letters("BTCUSDT"))}
    assert set(btc_dlq) == {bad_json.encode(), bad_price.encode()}
    assert btc_dlq[bad_price.encode()][b"origin"] == keys.stream("BTCUSDT", "book").encode()
    assert all(f[b"reason"].startswith(b"malformed: ") for f in btc_dlq.values())

    # every fault shows in the metrics
    text = await feed.until(
        "metrics after the faults",
        lambda: _metrics_with(feed, 'of_bybit_reconnects_total{category="spot"'),
    )
    lin = 'category="linear"'
    assert metric_sum(text, f'of_bybit_reconnects_total{{{lin},reason="closed"}}') >= 1
    assert metric_sum(text, 'of_bybit_reconnects_total{category="spot",reason="closed"}') >= 1
    assert metric_sum(text, f'of_bybit_resubscribes_total{{{lin},reason="gap"}}') >= 2
    assert metric_sum(text, f"of_bybit_malformed_frames_total{{{lin}}}") == 3
    assert metric_sum(text, f"of_bybit_unknown_topic_frames_total{{{lin}}}") == 1
    assert metric_sum(text, f'of_bybit_gaps_total{{{lin},stream="book"}}') >= 2
    assert metric_sum(text, f"of_bybit_backfilled_trades_total{{{lin}}}") >= 1
    assert metric_sum(text, 'of_dead_letters_total{reason="malformed",service="feed_bybit"}') == 3
    assert metric_sum(text, f'of_bybit_instrument_mismatches{{{lin},problem="tick_size"}}') == 1
    assert metric_sum(text, 'of_bybit_rest_requests_total{endpoint="instruments-info"') >= 4
    text = await feed.until("parser metrics", lambda: _metrics_with(feed, 'counter="resets"'))
    assert metric_sum(text, f'of_bybit_parser_events_total{{{lin},counter="resets"}}') >= 1
    assert metric_sum(text, f'of_bybit_parser_events_total{{{lin},counter="duplicates"}}') >= 1

    # and in the health report
    health = await feed.until("health report", feed.health)
    linear = health["bybit"]["linear"]
    assert linear["state"] == "connected"
    assert linear["parser"]["resets"] >= 1
    assert linear["counters"]["reconnects"] >= 1
    assert linear["last_frame_age_s"] is not None
    mismatches = health["instruments"]["linear"]["mismatches"]
    assert len(mismatches) == 1
    assert mismatches[0].startswith("BTCUSDT")
    assert health["instruments"]["linear"]["venue"]["BTCUSDT"]["qty_step"] == "0.001"

    assert await asyncio.to_thread(stop, feed.proc) == 0


async def _metrics_with(feed: Feed, needle: str) -> str:
    text = await feed.metrics()
    return text if needle in text else ""


async def test_silent_book_topic_is_resubscribed_and_silent_connection_reconnected(
    start_feed: Any,
) -> None:
    feed: Feed = await start_feed(
        OF_BYBIT_BOOK_SILENCE_S="0.6", OF_BYBIT_CONN_SILENCE_S="1.5", OF_BYBIT_PING_INTERVAL_S="0.3"
    )
    fake = feed.fake
    fake.start_market()
    await fake.wait_steps(30)
    fake.silence("linear", f"orderbook.{DEPTH}.BTCUSDT")  # the market moves, Bybit stays quiet

    async def resubscribed() -> bool:
        return any(
            req.get("op") == "unsubscribe" and req.get("args") == [f"orderbook.{DEPTH}.BTCUSDT"]
            for _, req in fake.requests
        )

    await feed.until("the silent book topic resubscribed", resubscribed)
    fake.unsilence("linear", f"orderbook.{DEPTH}.BTCUSDT")
    await fake.wait_steps(30)
    assert fake.mute_connections("linear") == 1  # no data, no acks, no pongs: a dead peer

    async def reconnected() -> bool:
        return fake.connections_opened >= 3  # linear + spot, then linear again

    await feed.until("a reconnect after the silence", reconnected)
    await _settle(
        feed,
        {
            "BTCUSDT": ("linear", fake.trades[("linear", "BTCUSDT")]),
            "BTCSPOT": ("spot", fake.trades[("spot", "BTCUSDT")]),
        },
    )
    ids = await feed.trade_ids("BTCUSDT")
    assert len(ids) == len(set(ids))
    text = await feed.until("silence metrics", lambda: _metrics_with(feed, 'reason="silent"} 1.0'))
    assert metric_sum(text, 'of_bybit_resubscribes_total{category="linear",reason="silent"}') >= 1
    assert metric_sum(text, 'of_bybit_reconnects_total{category="linear",reason="silent"}') >= 1
    assert 'of_bybit_topic_silence_seconds{category="linear",topic="publicTrade.BTCUSDT"}' in text
    assert await asyncio.to_thread(stop, feed.proc) == 0


async def test_stalled_redis_overflows_then_recovers_without_loss(start_feed: Any) -> None:
    """A publisher that cannot write closes the socket on purpose; nothing parsed is dropped."""
    feed: Feed = await start_feed(OF_BYBIT_OUTBOX_MAX="40")
    fake = feed.fake
    fake.start_market()
    await fake.wait_steps(50)
    await feed.redis.client_pause(800, all=False)  # writes wait; the publisher stalls
    await fake.wait_steps(60)
    await _settle(
        feed,
        {
            "BTCUSDT": ("linear", fake.trades[("linear", "BTCUSDT")]),
            "BTCSPOT": ("spot", fake.trades[("spot", "BTCUSDT")]),
        },
    )
    for symbol in ("BTCUSDT", "BTCSPOT"):
        ids = await feed.trade_ids(symbol)
        assert len(ids) == len(set(ids)), symbol
    text = await feed.until("overflow metric", lambda: _metrics_with(feed, "overflows_total{"))
    assert metric_sum(text, "of_bybit_outbox_overflows_total") >= 1
    assert metric_sum(text, 'of_bybit_reconnects_total{category="linear",reason="overflow"}') >= 1
    assert await asyncio.to_thread(stop, feed.proc) == 0


async def test_flood_and_rate_limited_backfill(start_feed: Any) -> None:
    """A flood of frames is absorbed; a 403 on the backfill leaves a marked gap, not a crash."""
    feed: Feed = await start_feed()
    fake = feed.fake
    fake.start_market()
    await fake.wait_steps(30)
    await fake.flood("linear", "BTCUSDT", 5000)  # content-neutral deltas, as fast as possible

    async def flooded() -> bool:
        health = await feed.health()
        frames = health.get("bybit", {}).get("linear", {}).get("counters", {}).get("frames", 0)
        return bool(frames >= 5000)

    await feed.until("the flood received", flooded)
    fake.fail_rest(20, 403)  # Bybit's rate limit: every backfill request refused
    fake.drop_connections("linear")
    await fake.wait_market_done()

    async def backfill_failed() -> bool:
        health = await feed.health()
        return bool(health["bybit"]["linear"]["counters"]["backfill_failures"] >= 1)

    await feed.until("the refused backfill reported", backfill_failed)

    async def books_equal() -> bool:
        book = fake.books[("linear", "BTCUSDT")]
        return await feed.book("BTCUSDT") == _reference(book)

    await feed.until("the book equal to the venue's after the flood", books_equal)
    ids = await feed.trade_ids("BTCUSDT")
    assert len(ids) == len(set(ids))
    gaps = [m for m in await feed.messages("BTCUSDT", "trades") if isinstance(m, Gap)]
    assert any(g.reason.startswith("connection lost") for g in gaps)
    text = await feed.metrics()
    assert (
        metric_sum(text, 'of_bybit_rest_requests_total{endpoint="recent-trade",outcome="rate') >= 1
    )
    assert metric_sum(text, 'of_bybit_backfill_failures_total{category="linear"}') >= 1
    assert metric_sum(text, 'of_bybit_frames_total{category="linear"}') >= 5000
    assert feed.proc.poll() is None
    assert await asyncio.to_thread(stop, feed.proc) == 0


async def test_killed_feed_restarts_and_backfills_what_it_missed_once(start_feed: Any) -> None:
    """SIGKILL loses what was queued and what traded meanwhile; the restart recovers both from
    REST without repeating what the dead run had already published."""
    feed: Feed = await start_feed()
    fake = feed.fake
    fake.start_market()
    await fake.wait_steps(60)
    before = set(await feed.trade_ids("BTCUSDT"))
    assert before
    feed.proc.kill()
    await asyncio.to_thread(feed.proc.wait)
    await fake.wait_steps(20)  # the market goes on while no feed runs
    fake.pause_market()
    feed = await start_feed()
    fake.start_market()
    symbols = {
        "BTCUSDT": ("linear", fake.trades[("linear", "BTCUSDT")]),
        "BTCSPOT": ("spot", fake.trades[("spot", "BTCUSDT")]),
    }
    await _settle(feed, symbols)
    for symbol in symbols:
        msgs = await feed.messages(symbol, "trades")
        trades = [m for m in msgs if isinstance(m, Trade)]
        ids = [t.trade_id for t in trades]
        assert len(ids) == len(set(ids)), symbol
        assert any(t.backfill for t in trades), symbol
        assert not [m for m in msgs if isinstance(m, Gap) and "restarted" in m.reason]
    assert await asyncio.to_thread(stop, feed.proc) == 0


def test_env_names_are_settings() -> None:
    """The variables the tests set exist (a typo would make a test pass for the wrong reason)."""
    from of_feed_bybit.service import BybitSettings
    from ofcommon.settings import env_name, settings_fields

    names = {env_name(f) for f in settings_fields(BybitSettings)}
    used = {
        "OF_BYBIT_BOOK_SILENCE_S",
        "OF_BYBIT_CONN_SILENCE_S",
        "OF_BYBIT_PING_INTERVAL_S",
        "OF_BYBIT_OUTBOX_MAX",
        "OF_BYBIT_BACKFILL_DELAY_S",
        "OF_BYBIT_HEARTBEAT_S",
        "OF_BYBIT_REST_RETRIES",
        "OF_BYBIT_BACKOFF_INITIAL_S",
        "OF_BYBIT_BACKOFF_MAX_S",
    }
    assert used <= names, used - names
