"""Leases and the checkpoint fence against a real Redis: a stale owner can neither read nor ack."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from ofcommon import keys
from ofcommon.bus import Producer, ensure_group
from ofcommon.checkpoint import SNAPSHOT_VERSION, Fence, Fenced, Snapshot
from ofcommon.messages import Side, Trade
from ofcommon.ownership import Coordinator, Lease

pytestmark = pytest.mark.redis

STAGE = "counting"
SYMBOL = "BTCUSDT"


def _coordinator(redis: aioredis.Redis, worker: str, got: list[Lease]) -> Coordinator:
    async def on_acquire(lease: Lease) -> None:
        got.append(lease)

    async def nothing(lease: Lease) -> None:
        return None

    return Coordinator(
        redis,
        stage=STAGE,
        worker_id=worker,
        eligible=[SYMBOL],
        on_acquire=on_acquire,
        on_release=nothing,
        on_lost=nothing,
        tick_s=0.1,
        lease_ttl_s=1.0,
        dead_after_s=0.3,
    )


async def _fill(redis: aioredis.Redis, n: int) -> list[str]:
    stream = keys.stream(SYMBOL, "trades")
    await ensure_group(redis, stream, STAGE)
    producer = Producer(redis, service="test")
    for i in range(n):
        producer.add(stream, Trade(i, i, 100.0 + i, 1.0, Side.BUY, str(i)))
    await producer.flush()
    return [i.decode() for i, _ in await redis.xrange(stream)]


def _fence(redis: aioredis.Redis, lease: Lease) -> Fence:
    return Fence(
        redis,
        symbol=SYMBOL,
        stage=STAGE,
        streams=[keys.stream(SYMBOL, "trades")],
        lease_value=lease.value,
    )


def _snap(position: str) -> Snapshot:
    return Snapshot(
        version=SNAPSHOT_VERSION,
        positions={keys.stream(SYMBOL, "trades"): position},
        last_out={},
        state=b"state",
    )


async def test_checkpoint_acks_exactly_what_it_covers(redis: aioredis.Redis) -> None:
    ids = await _fill(redis, 10)
    got: list[Lease] = []
    await _coordinator(redis, "w1", got).tick()
    [lease] = got
    fence = _fence(redis, lease)
    stream = keys.stream(SYMBOL, "trades")
    batch = await fence.read({stream: ">"}, 100)
    assert [i for _, i, _ in batch] == ids
    assert await fence.checkpoint(_snap(ids[3])) == 4
    pending = await redis.xpending_range(stream, STAGE, min="-", max="+", count=100)
    assert [p["message_id"].decode() for p in pending] == ids[4:]
    assert (await fence.load()) == _snap(ids[3])


async def test_paused_owner_whose_lease_expired_cannot_read_checkpoint_or_ack(
    redis: aioredis.Redis,
) -> None:
    ids = await _fill(redis, 6)
    stream = keys.stream(SYMBOL, "trades")
    got_a: list[Lease] = []
    a = _coordinator(redis, "worker-a", got_a)
    await a.tick()
    [lease_a] = got_a
    fence_a = _fence(redis, lease_a)
    read_by_a = await fence_a.read({stream: ">"}, 3)
    assert [i for _, i, _ in read_by_a] == ids[:3]

    # worker A pauses (no heartbeat, no renewal): its lease expires, B takes over
    await asyncio.sleep(1.2)
    got_b: list[Lease] = []
    b = _coordinator(redis, "worker-b", got_b)
    await b.tick()
    [lease_b] = got_b
    assert lease_b.generation == lease_a.generation + 1

    # A wakes up and tries to carry on: every fenced operation is refused
    with pytest.raises(Fenced):
        await fence_a.checkpoint(_snap(ids[2]))
    with pytest.raises(Fenced):
        await fence_a.read({stream: ">"}, 10)
    assert await redis.get(keys.snapshot(SYMBOL, STAGE)) is None
    pending = await redis.xpending(stream, STAGE)
    assert pending["pending"] == 3  # A's reads were not acknowledged

    # B first re-reads what A had taken, then the rest; its checkpoint is accepted
    fence_b = _fence(redis, lease_b)
    again = await fence_b.read({stream: "0"}, 100)
    assert [i for _, i, _ in again] == ids[:3]
    rest = await fence_b.read({stream: ">"}, 100)
    assert [i for _, i, _ in rest] == ids[3:]
    assert await fence_b.checkpoint(_snap(ids[-1])) == 6
    assert (await redis.xpending(stream, STAGE))["pending"] == 0


async def test_renewal_keeps_a_live_owner_and_detects_a_lost_lease(redis: aioredis.Redis) -> None:
    lost: list[str] = []
    got: list[Lease] = []

    async def on_lost(lease: Lease) -> None:
        lost.append(lease.symbol)

    async def nothing(lease: Lease) -> None:
        return None

    async def on_acquire(lease: Lease) -> None:
        got.append(lease)

    c = Coordinator(
        redis,
        stage=STAGE,
        worker_id="w",
        eligible=[SYMBOL],
        on_acquire=on_acquire,
        on_release=nothing,
        on_lost=on_lost,
        tick_s=0.1,
        lease_ttl_s=1.0,
        dead_after_s=0.5,
    )
    await c.tick()
    for _ in range(15):  # 1.5 s of ticks outlives the 1 s TTL only through renewal
        await asyncio.sleep(0.1)
        await c.tick()
    assert lost == []
    assert SYMBOL in c.owned
    await redis.set(keys.lease(SYMBOL, STAGE), b"intruder:99")
    await c.tick()
    assert lost == [SYMBOL]
    await c.leave()
