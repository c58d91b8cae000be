"""Fault: Redis refusing writes (``maxmemory`` forced below use, OOM) under the live Bybit feed.

The feed runs as a process against a fake Bybit serving the real Binance BTCUSDT capture and the
case's own Redis. While writes are refused, the feed must keep what it could not write and write
it later, or publish a ``Gap`` that says what was lost: no trade missing and no hole in the book
stream without a ``Gap`` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from tests.support.faults import feed
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import stop, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

OOM_S = 2.0


async def test_feed_under_redis_oom_loses_nothing_or_says_what(
    case: Case, own_redis: OwnRedis, tmp_path: Path
) -> None:
    case.fault = "Redis refusing writes (OOM)"
    case.checked = "feed: every trade published, no book hole, or a Gap that says what"
    fake, trades, book = feed.market()
    r = own_redis.client()
    async with fake:
        proc = feed.spawn(own_redis.url, fake, tmp_path)
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
            with contextlib.suppress(AssertionError):  # judged below, with the reason
                await asyncio.to_thread(
                    wait_for, lambda: not feed.problems(r, trades, book), 15, "the feed to settle"
                )
            await asyncio.sleep(1.0)  # anything written late or twice would show below
            assert proc.poll() is None, "the feed died"
            case.figures["gaps"] = str(feed.gaps(r))
            found = feed.problems(r, trades, book)
            assert not found, "; ".join(found)
        finally:
            await asyncio.to_thread(stop, proc)
            r.close()
