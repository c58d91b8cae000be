"""A stateless consumer-group worker for kill tests: records every entry it processes.

Usage: python -m tests.support.group_consumer REDIS_URL STREAM GROUP CONSUMER DELAY_S
Each processed entry id is appended to the list ``processed:<consumer>`` before the batch is acked.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from ofcommon.bus import GroupReader


async def main(url: str, stream: str, group: str, consumer: str, delay: float) -> None:
    redis = aioredis.Redis.from_url(url)
    reader = GroupReader(
        redis,
        [stream],
        group,
        consumer,
        service="test",
        count=50,
        block_ms=200,
        claim_idle_ms=60_000,
    )
    await reader.start()
    await redis.set(f"ready:{consumer}", 1)
    while True:
        entries = await reader.read()
        for entry in entries:
            await redis.rpush(f"processed:{consumer}", entry.id)
            await asyncio.sleep(delay)
        await reader.ack(entries)


if __name__ == "__main__":
    url, stream, group, consumer, delay = sys.argv[1:6]
    asyncio.run(main(url, stream, group, consumer, float(delay)))
