"""GroupReader under faults against a real Redis: a poison entry in the consumer's own pending
list is dead-lettered after N deliveries, and a position trimmed away is noticed."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from ofcommon import codec, keys
from ofcommon.bus import GroupReader, Producer
from ofcommon.messages import Side, Trade

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
