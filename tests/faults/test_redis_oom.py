"""Fault: Redis refusing writes (``maxmemory`` forced below use, OOM) under the live Bybit feed.

The feed runs as a process against a fake Bybit serving the real Binance BTCUSDT capture and the
case's own Redis. While writes are refused, the feed must keep what it could not write and write
it later, or publish a ``Gap`` that says what was lost: no trade missing and no hole in the book
stream without a ``Gap`` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
import redis as sync_redis

from ofcommon import codec, keys
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Message, Trade
from tests.support.fake_bybit import FakeBybit, binance_timelines, instrument_row
from tests.support.faults.analytics import REPO
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import spawn_service, stop, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

SYMBOL = "BTCUSDT"
DEPTH = 50
OOM_S = 2.0
REGISTRY = """
[instruments.BTCUSDT]
group = "crypto"
tick_size = 0.01
row_size = 10.0
session = "FULL_DAY"
bybit = { category = "linear", symbol = "BTCUSDT" }
"""


def _env(redis_url: str, fake: FakeBybit, tmp_path: Path) -> dict[str, str]:
    registry = tmp_path / "instruments.toml"
    registry.write_text(REGISTRY)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    return {
        **base,
        "PYTHONPATH": str(REPO),
        "OF_REDIS_URL": redis_url,
        "OF_LOG_FORMAT": "json",
        "OF_WORKER_ID": "bybit-faults",
        "OF_REGISTRY_FILE": str(registry),
        "OF_INSTRUMENTS": SYMBOL,
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


def _messages(r: sync_redis.Redis, kind: str) -> list[Message]:
    return [codec.decode(f[codec.FIELD]) for _, f in r.xrange(keys.stream(SYMBOL, kind))]


def book_holes(msgs: list[Message]) -> list[str]:
    """Book deltas that do not follow the previous one by one sequence number, with neither a
    snapshot nor a ``Gap`` between them: a consumer would apply them to the wrong book."""
    holes = []
    last: int | None = None
    for m in msgs:
        if isinstance(m, BookSnapshot):
            last = m.seq
        elif isinstance(m, Gap):
            last = None
        elif isinstance(m, BookDelta):
            if last is not None and m.seq != last + 1:
                holes.append(f"delta seq {m.seq} after {last} without a Gap")
            last = m.seq if last is not None else None
    return holes


def final_book(msgs: list[Message]) -> tuple[list[tuple[float, float]], ...] | None:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for m in msgs:
        if isinstance(m, BookSnapshot):
            bids, asks = dict(m.bids), dict(m.asks)
        elif isinstance(m, BookDelta):
            for side, levels in ((bids, m.bids), (asks, m.asks)):
                for price, size in levels:
                    if size == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
    return sorted(bids.items(), reverse=True), sorted(asks.items())


async def test_feed_under_redis_oom_loses_nothing_or_says_what(
    case: Case, own_redis: OwnRedis, tmp_path: Path
) -> None:
    case.fault = "Redis refusing writes (OOM)"
    case.checked = "feed: every trade published, no book hole, or a Gap that says what"
    trades, book = binance_timelines("linear", frames=3000, trades_per_frame=3)
    assert book is not None
    fake = FakeBybit(
        books=[book],
        trades=[trades],
        instruments={"linear": [instrument_row(SYMBOL, "0.01", "0.000001")]},
        interval_s=0.01,
    )
    r = own_redis.client()
    async with fake:
        proc = spawn_service("feed_bybit", _env(own_redis.url, fake, tmp_path), tmp_path, "feed")
        try:
            await asyncio.to_thread(
                wait_for, lambda: len(fake.subscribed("linear")) == 2, 60, "the feed to subscribe"
            )
            fake.start_market()
            await fake.wait_steps(150)
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", "1")  # far below what is used: every write is refused
            await asyncio.sleep(OOM_S)
            r.config_set("maxmemory", "0")
            refused = int(r.info("errorstats").get("errorstat_OOM", {}).get("count", 0))
            assert refused > 0, "no write was refused: the fault did not happen"
            case.figures["writes refused"] = str(refused)
            await fake.wait_market_done()
            reference = book.reference(DEPTH)

            def settled() -> bool:
                return final_book(_messages(r, "book")) == reference

            with contextlib.suppress(AssertionError):  # judged below, with the reason
                await asyncio.to_thread(wait_for, settled, 15, "the book equal to the venue's")
            await asyncio.sleep(1.0)  # anything written late or twice would show below
            assert proc.poll() is None, "the feed died"
            problems = []
            published = [m.trade_id for m in _messages(r, "trades") if isinstance(m, Trade)]
            trade_gaps = [m for m in _messages(r, "trades") if isinstance(m, Gap)]
            missing = set(trades.all_ids) - set(published)
            if len(published) != len(set(published)):
                problems.append(f"{len(published) - len(set(published))} trades published twice")
            if missing and not trade_gaps:
                problems.append(f"{len(missing)} trades lost without a Gap")
            book_msgs = _messages(r, "book")
            problems += book_holes(book_msgs)[:3]
            if final_book(book_msgs) != reference:
                problems.append("the final book differs from the venue's")
            case.figures["trades lost"] = str(len(missing))
            case.figures["gaps"] = str(len(trade_gaps) + sum(isinstance(m, Gap) for m in book_msgs))
            assert not problems, "; ".join(problems)
        finally:
            await asyncio.to_thread(stop, proc)
            r.close()
