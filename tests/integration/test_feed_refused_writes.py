"""The MT5 feed loop while its Redis refuses writes (OOM): nothing polled meanwhile is lost.

The feed's own redis-server (not the shared one) is made to refuse every write with
``maxmemory 1`` under ``noeviction`` mid-stream, then lifted; the trades must equal the ticks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.integration.test_mt5_feed import (
    expected_trades,
    fx_script,
    make_feed,
    now_server_ms,
    read,
    run_until,
)
from tests.support import fake_mt5

from ofcommon import keys
from ofcommon.embedded import EmbeddedServer, start_redis
from ofcommon.messages import Trade

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture
def fake_terminal() -> Iterator[fake_mt5.FakeTerminal]:
    term = fake_mt5.FakeTerminal(lambda: now_server_ms())
    fake_mt5.install(term)
    yield term
    fake_mt5.install(None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = start_redis(tmp_path / "redis", appendonly=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def own(server: EmbeddedServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        await client.config_set("maxmemory-policy", "noeviction")
        yield client
    finally:
        await client.aclose()


async def oom_refusals(r: aioredis.Redis) -> int:
    stat = (await r.info("errorstats")).get("errorstat_OOM", {})
    return int(stat.get("count", 0)) if isinstance(stat, dict) else 0


async def test_ticks_polled_while_redis_refuses_writes_are_published_once_it_accepts(
    fake_terminal: fake_mt5.FakeTerminal, own: aioredis.Redis
) -> None:
    rows = fx_script(now_server_ms() + 300, 1500)
    fake_terminal.add(fake_mt5.FakeSymbol("EURUSDm", ticks=fake_mt5.ticks(rows)))
    want = expected_trades("EURUSD", rows)
    feed = make_feed(own, ["EURUSD"])
    phase = "flowing"

    async def done() -> bool:
        nonlocal phase
        n = await own.xlen(keys.stream("EURUSD", "trades"))
        if phase == "flowing" and n > 200:
            await own.config_set("maxmemory", "1")
            phase = "refusing"
        elif phase == "refusing" and await oom_refusals(own) >= 3:
            await own.config_set("maxmemory", "0")  # the feed met several refusals
            phase = "lifted"
        if phase != "lifted":
            return False
        trades = [m for m in await read(own, "EURUSD", "trades") if isinstance(m, Trade)]
        return len(trades) >= len(want)

    await run_until(feed, done)
    assert phase == "lifted"
    got = [m for m in await read(own, "EURUSD", "trades") if isinstance(m, Trade)]
    assert [(t.trade_id, t.ts_event, t.price, t.side, t.size_kind) for t in got] == want
