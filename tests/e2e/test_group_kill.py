"""A consumer-group consumer SIGKILLed mid-batch: its pending entries are reclaimed, none lost."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.support.servers import wait_for

from ofcommon import keys
from ofcommon.bus import GroupReader, Producer
from ofcommon.messages import Side, Trade

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

# ruff: noqa: ASYNC220  (the victim is started once; nothing else runs on the loop meanwhile)

REPO = Path(__file__).resolve().parents[2]


async def test_killed_consumer_loses_nothing(
    redis: aioredis.Redis, service_env: dict[str, str]
) -> None:
    stream = keys.stream("BTCUSDT", "patterns")
    group = "alerts"
    producer = Producer(redis, service="test")
    for i in range(200):
        producer.add(stream, Trade(i, i, 100.0, 1.0, Side.BUY, str(i)))
    await producer.flush()
    produced = [i.decode() for i, _ in await redis.xrange(stream)]

    url = service_env["OF_REDIS_URL"]
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.group_consumer",
            url,
            stream,
            group,
            "victim",
            "0.01",
        ],
        cwd=REPO,
        env=service_env,
    )
    sync = sync_redis.Redis.from_url(url)
    try:
        # kill it in the middle of a batch: some entries processed, the batch not acked
        wait_for(lambda: sync.llen("processed:victim") >= 70, 30, "the victim to be mid-batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        done_by_victim = [x.decode() for x in sync.lrange("processed:victim", 0, -1)]
        stranded = [
            p["message_id"].decode()
            for p in sync.xpending_range(stream, group, min="-", max="+", count=1000)
        ]
        assert stranded, "the kill must leave unacknowledged entries behind"
    finally:
        if victim.poll() is None:
            victim.kill()
        sync.close()

    rescuer = GroupReader(
        redis, [stream], group, "rescuer", service="test", count=50, block_ms=50, claim_idle_ms=300
    )
    await rescuer.start()
    seen: list[str] = []
    for _ in range(200):
        entries = await rescuer.read()
        seen.extend(e.id for e in entries)
        await rescuer.ack(entries)
        if (
            set(seen) | set(done_by_victim) >= set(produced)
            and (await redis.xpending(stream, group))["pending"] == 0
        ):
            break
    assert set(seen) | set(done_by_victim) == set(produced)
    assert (await redis.xpending(stream, group))["pending"] == 0
    # what the victim had read but not acked was reclaimed and redelivered, not skipped
    assert set(stranded) <= set(seen)
