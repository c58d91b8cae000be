"""Source claims in a real Redis: one venue per instrument, refusals counted, a lost claim
stops the feed's writes to that instrument at once."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from of_feed_bybit.service import bybit_instruments, keep_claimed
from ofcommon import keys
from ofcommon.instruments import load_registry
from ofcommon.messages import Heartbeat
from ofcommon.sourceclaim import ClaimedProducer, SourceClaims

pytestmark = pytest.mark.redis


def _refusals(service: str, symbol: str, holder: str) -> float:
    labels = {"service": service, "symbol": symbol, "holder": holder}
    return REGISTRY.get_sample_value("of_source_refused_total", labels) or 0.0


async def test_a_second_venue_is_refused_and_counted(redis: aioredis.Redis) -> None:
    bybit = SourceClaims(redis, venue="bybit", worker_id="b1", service="feed_bybit")
    mt5 = SourceClaims(redis, venue="mt5", worker_id="m1", service="feed_mt5")
    assert await bybit.acquire(["BTCUSDT", "XAUUSDT"]) == {}
    before = _refusals("feed_mt5", "BTCUSDT", "bybit")

    refused = await mt5.acquire(["BTCUSDT", "EURUSD"])

    assert refused == {"BTCUSDT": "bybit/b1"}
    assert mt5.held == {"EURUSD"}
    assert bybit.held == {"BTCUSDT", "XAUUSDT"}
    assert _refusals("feed_mt5", "BTCUSDT", "bybit") == before + 1
    assert await redis.get(keys.source_claim("BTCUSDT")) == b"bybit/b1"
    assert 0 < await redis.pttl(keys.source_claim("BTCUSDT")) <= 10_000


async def test_a_restarted_feed_of_the_same_venue_takes_over_at_once(
    redis: aioredis.Redis,
) -> None:
    old = SourceClaims(redis, venue="bybit", worker_id="host-1", service="feed_bybit")
    await old.acquire(["BTCUSDT"])
    new = SourceClaims(redis, venue="bybit", worker_id="host-2", service="feed_bybit")
    assert await new.acquire(["BTCUSDT"]) == {}
    assert await redis.get(keys.source_claim("BTCUSDT")) == b"bybit/host-2"
    # The predecessor's release must not free its successor's claim.
    await old.release()
    assert await redis.get(keys.source_claim("BTCUSDT")) == b"bybit/host-2"
    await new.release()
    assert await redis.exists(keys.source_claim("BTCUSDT")) == 0


async def test_a_lost_claim_stops_the_writes_of_that_instrument(redis: aioredis.Redis) -> None:
    mt5 = SourceClaims(redis, venue="mt5", worker_id="m1", service="feed_mt5")
    await mt5.acquire(["BTCUSDT", "EURUSD"])
    producer = ClaimedProducer(redis, mt5, service="feed_mt5")
    beat = Heartbeat(1, 1, "mt5")
    producer.add(keys.stream("BTCUSDT", "trades"), beat)
    await producer.flush()
    assert await redis.xlen(keys.stream("BTCUSDT", "trades")) == 1

    # The MT5 feed stalled past its TTL and the Bybit feed took the instrument meanwhile.
    await redis.delete(keys.source_claim("BTCUSDT"))
    bybit = SourceClaims(redis, venue="bybit", worker_id="b1", service="feed_bybit")
    assert await bybit.acquire(["BTCUSDT"]) == {}
    before = _refusals("feed_mt5", "BTCUSDT", "bybit")
    await mt5.renew()

    assert mt5.held == {"EURUSD"}
    assert mt5.refused == {"BTCUSDT": "bybit/b1"}
    assert _refusals("feed_mt5", "BTCUSDT", "bybit") == before + 1
    for _ in range(3):
        producer.add(keys.stream("BTCUSDT", "trades"), beat)
        producer.add(keys.stream("EURUSD", "trades"), beat)
    await producer.flush()
    assert await redis.xlen(keys.stream("BTCUSDT", "trades")) == 1  # nothing after the loss
    assert await redis.xlen(keys.stream("EURUSD", "trades")) == 3
    assert producer.withheld == 3
    assert await redis.get(keys.source_claim("BTCUSDT")) == b"bybit/b1"


async def test_a_claim_that_expired_unclaimed_is_taken_back_on_renewal(
    redis: aioredis.Redis,
) -> None:
    mt5 = SourceClaims(redis, venue="mt5", worker_id="m1", service="feed_mt5")
    await mt5.acquire(["EURUSD"])
    await redis.delete(keys.source_claim("EURUSD"))  # expired while Redis was away
    await mt5.renew()
    assert mt5.held == {"EURUSD"}
    assert await redis.get(keys.source_claim("EURUSD")) == b"mt5/m1"


async def test_the_bybit_feed_drops_what_mt5_holds(redis: aioredis.Redis) -> None:
    registry = load_registry()
    wanted = bybit_instruments(registry, "BTCUSDT,XAUUSDT,AAPL")
    mt5 = SourceClaims(redis, venue="mt5", worker_id="m1", service="feed_mt5")
    await mt5.acquire(["XAUUSDT"])  # a misconfigured MT5 feed got there first
    bybit = SourceClaims(redis, venue="bybit", worker_id="b1", service="feed_bybit")

    kept = await keep_claimed(bybit, wanted)

    assert {c: [i.symbol for i in insts] for c, insts in kept.items()} == {
        "linear": ["AAPL", "BTCUSDT"]
    }
    assert bybit.refused == {"XAUUSDT": "mt5/m1"}
    assert await redis.get(keys.source_claim("BTCUSDT")) == b"bybit/b1"
    assert await redis.get(keys.source_claim("XAUUSDT")) == b"mt5/m1"
