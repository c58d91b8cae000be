"""The stage's rebuild hook: called only without a usable checkpoint, its state and positions are
where the worker goes on; an undecodable snapshot counts as none instead of crashing the worker.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis
from tests.support.counting import CountingFold, CountState

from ofcommon import codec, keys
from ofcommon.bus import Producer, Redis
from ofcommon.checkpoint import Snapshot
from ofcommon.messages import Side, Trade
from ofcommon.ownership import Lease
from ofcommon.stage import InstrumentWorker, Rebuilt, StageTiming

pytestmark = pytest.mark.redis

SYMBOL = "BTCUSDT"
TRADES = keys.stream(SYMBOL, "trades")
LEASE = Lease(SYMBOL, "stage-rebuild", 1)
TIMING = StageTiming(checkpoint_interval_s=0.05, read_count=4, block_ms=50)


async def _write(redis: aioredis.Redis, first: int, n: int) -> None:
    producer = Producer(redis, service="test", trim_by_age=False)
    for i in range(first, first + n):
        producer.add(TRADES, Trade(i, i, 100.0, float(i), Side.BUY, str(i)))
    await producer.flush()


class Hook:
    """A rebuild that knows the true count up to a given entry (as a database would)."""

    def __init__(self, state: CountState | None, position: str | None) -> None:
        self.calls: list[str] = []
        self._state = state
        self._position = position

    async def __call__(self, symbol: str, redis: Redis) -> Rebuilt[CountState] | None:
        self.calls.append(symbol)
        if self._state is None or self._position is None:
            return None
        return Rebuilt(self._state, {TRADES: self._position})


async def _run(redis: aioredis.Redis, hook: Hook) -> None:
    await redis.set(keys.lease(SYMBOL, "counting"), LEASE.value)
    worker = InstrumentWorker(
        redis, CountingFold(), LEASE, service="counting", timing=TIMING, rebuild=hook
    )
    task = asyncio.create_task(worker.run())
    [(last, _)] = await redis.xrevrange(TRADES, count=1)

    async def delivered() -> bool:
        groups = await redis.xinfo_groups(TRADES)
        return [g["last-delivered-id"] for g in groups] == [last]

    while not await delivered():
        assert not task.done(), "the worker ended early"
        await asyncio.sleep(0.02)
    worker.stop()
    await task


async def _counts(redis: aioredis.Redis) -> list[tuple[int, float]]:
    out = []
    for _, fields in await redis.xrange(keys.stream(SYMBOL, "counts")):
        msg = codec.decode(fields[b"d"])
        assert isinstance(msg, Trade)
        out.append((msg.seq, msg.size))
    return out


async def test_rebuild_only_without_checkpoint_and_the_worker_goes_on_from_it(
    redis: aioredis.Redis,
) -> None:
    await _write(redis, 1, 10)
    first = Hook(None, None)
    await _run(redis, first)
    assert first.calls == [SYMBOL]  # no checkpoint yet: asked, and None means start empty
    [(tenth, _)] = await redis.xrevrange(TRADES, count=1)

    await redis.delete(keys.snapshot(SYMBOL, "counting"))
    await _write(redis, 11, 5)
    rebuild = Hook(CountState(count=10, volume=55.0), tenth.decode())
    await _run(redis, rebuild)
    assert rebuild.calls == [SYMBOL]
    assert await _counts(redis) == [(i, i * (i + 1) / 2) for i in range(1, 16)]

    # a usable checkpoint: the hook is not asked
    await _write(redis, 16, 1)
    unused = Hook(CountState(count=999), tenth.decode())
    await _run(redis, unused)
    assert unused.calls == []
    assert (await _counts(redis))[-1] == (16, 136.0)


async def test_undecodable_snapshot_counts_as_none(redis: aioredis.Redis) -> None:
    await _write(redis, 1, 3)
    await _run(redis, Hook(None, None))
    key = keys.snapshot(SYMBOL, "counting")
    raw = await redis.get(key)
    assert isinstance(raw, bytes)
    snap = msgspec.msgpack.decode(raw, type=Snapshot)
    await redis.set(key, msgspec.msgpack.encode(msgspec.structs.replace(snap, state=b"\xc1")))
    [(third, _)] = await redis.xrevrange(TRADES, count=1)
    await _write(redis, 4, 2)
    hook = Hook(CountState(count=3, volume=6.0), third.decode())
    await _run(redis, hook)
    assert hook.calls == [SYMBOL]
    assert await _counts(redis) == [(1, 1.0), (2, 3.0), (3, 6.0), (4, 10.0), (5, 15.0)]
