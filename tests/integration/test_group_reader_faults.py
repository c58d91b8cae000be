"""GroupReader under faults against a real Redis: a poison entry in the consumer's own pending
list is dead-lettered after N deliveries, and a position trimmed away is noticed."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ofcommon import codec, keys
from ofcommon.bus import LAG_COUNT_CAP, GroupReader, Producer
from ofcommon.embedded import start_redis
from ofcommon.messages import Side, Trade
from ofcommon.trims import TrimWatch

pytestmark = pytest.mark.redis


async def test_a_poison_entry_in_the_own_pending_list_is_dead_lettered_after_n_deliveries(
    redis: aioredis.Redis,
) -> None:
    stream = keys.stream("SOLUSDT", "trades")
    poison = Trade(1, 1, 1.0, 1.0, Side.BUY, "poison")
    await Producer(redis, service="test").publish(stream, poison)
    max_deliveries = 3
    returned = 0
    # Each round is one restart of a consumer that dies on the entry before acking it: it reads
    # its own pending list first (the first round reads it as new).
    for _ in range(max_deliveries + 2):
        reader = GroupReader(
            redis, [stream], "g", "c1", service="test", block_ms=10, max_deliveries=max_deliveries
        )
        await reader.start()
        entries = await reader.read()
        returned += sum(1 for e in entries if e.msg == poison)
    assert returned == max_deliveries  # then it stops coming back
    dead = await redis.xrange(keys.dead_letters("SOLUSDT"))
    assert len(dead) == 1
    reason = f"poison: delivered {max_deliveries + 1} times without ack"
    assert dead[0][1][b"reason"] == reason.encode()
    assert dead[0][1][codec.FIELD] == codec.encode(poison)
    assert (await redis.xpending(stream, "g"))["pending"] == 0


def _trimmed_count(service: str, kind: str) -> float:
    value = REGISTRY.get_sample_value("of_trimmed_unread_total", {"service": service, "kind": kind})
    return value or 0.0


async def test_entries_trimmed_before_the_group_read_them_are_counted_once(
    redis: aioredis.Redis,
) -> None:
    stream = keys.stream("DOTUSDT", "trades")
    producer = Producer(redis, service="test", trim_by_age=False)
    sent = [Trade(i, i, 1.0, 1.0, Side.BUY, str(i)) for i in range(1, 11)]
    for t in sent:
        producer.add(stream, t)
    await producer.flush()
    service = "trimwatch"
    first = GroupReader(redis, [stream], "g", "c1", service=service, count=3, block_ms=10)
    await first.start()
    taken = await first.read()
    await first.ack(taken)
    await redis.xtrim(
        stream, maxlen=4, approximate=False
    )  # the consumer is away; the feed's MAXLEN cuts
    kept = 4
    lost = len(sent) - len(taken) - kept  # entries after the group's position, now gone
    before = _trimmed_count(service, "trades")

    again = GroupReader(redis, [stream], "g", "c1", service=service, count=100, block_ms=10)
    rest = await again.read()
    assert [e.msg for e in rest] == sent[-kept:]
    await again.ack(rest)
    assert _trimmed_count(service, "trades") - before == lost
    info = next(g for g in await redis.xinfo_groups(stream) if g["name"] == b"g")
    assert info["lag"] == 0  # the loss is settled: the group's lag is true again
    third = GroupReader(redis, [stream], "g", "c1", service=service, count=100, block_ms=10)
    assert await third.read() == []
    assert _trimmed_count(service, "trades") - before == lost  # reported once


async def test_on_redis_6_a_trimmed_position_is_seen_without_server_counters(
    free_tmp: Path,
) -> None:
    # The embedded server of `make run` is Redis 6.2: no entries-added, no entries-read, no lag.
    server = start_redis(free_tmp, appendonly=False)
    client = aioredis.Redis.from_url(server.url)
    try:
        version = (await client.info("server"))["redis_version"]
        assert str(version).startswith("6.")
        stream = keys.stream("DOTUSDT", "trades")
        ids = [await client.xadd(stream, {codec.FIELD: b"x"}) for _ in range(10)]
        await client.xgroup_create(stream, "g", id="0")
        await client.xreadgroup("g", "c1", {stream: ">"}, count=3)
        watch = TrimWatch(client, "g", service="trimwatch6", cap=LAG_COUNT_CAP)
        assert await watch.check(stream) is None  # nothing lost; the top is now known
        await client.xtrim(stream, maxlen=4, approximate=False)
        found = await watch.check(stream)
        assert found is not None
        assert found.lost is None  # some are gone; how many, Redis 6 cannot say
        assert (found.after, found.before) == (ids[2].decode(), ids[6].decode())
        assert await watch.check(stream) is None  # reported once
    finally:
        await client.aclose()
        server.stop()
