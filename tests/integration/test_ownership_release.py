"""A slow hand-over does not stall the ownership tick: while one instrument is being released
(its final checkpoint can take long), the worker keeps beating and renewing its other leases."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from ofcommon import keys
from ofcommon.ownership import Coordinator, Lease, assign

pytestmark = pytest.mark.redis

STAGE = "handover"
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
LEASE_TTL_S = 2.0


def _coordinator(
    redis: aioredis.Redis, worker: str, release_gate: asyncio.Event, released: list[str]
) -> Coordinator:
    async def nothing(lease: Lease) -> None:
        return None

    async def slow_release(lease: Lease) -> None:
        await release_gate.wait()  # a final checkpoint that takes its time
        released.append(lease.symbol)

    return Coordinator(
        redis,
        stage=STAGE,
        worker_id=worker,
        eligible=SYMBOLS,
        on_acquire=nothing,
        on_release=slow_release,
        on_lost=nothing,
        tick_s=0.1,
        lease_ttl_s=LEASE_TTL_S,
        dead_after_s=5.0,
    )


async def test_ticks_go_on_while_a_release_is_slow(redis: aioredis.Redis) -> None:
    gate = asyncio.Event()
    released: list[str] = []
    a = _coordinator(redis, "wa", gate, released)
    await a.tick()
    assert sorted(a.owned) == SYMBOLS
    open_gate = asyncio.Event()
    open_gate.set()
    b = _coordinator(redis, "wb", open_gate, [])
    await b.tick()  # joins: half of the instruments are now b's
    both = {"wa": frozenset(SYMBOLS), "wb": frozenset(SYMBOLS)}
    given = sorted(s for s, w in assign(both).items() if w == "wb")
    kept = sorted(s for s, w in assign(both).items() if w == "wa")
    assert given
    assert kept

    first = asyncio.create_task(a.tick())  # starts handing back b's share
    await asyncio.wait({first}, timeout=10)
    assert first.done(), "the tick waited for the release"
    # Several lease lifetimes of ticks while the release hangs: a's leases must all survive,
    # the ones being handed over included (the worker is still checkpointing them).
    for _ in range(round(LEASE_TTL_S * 1.5 / 0.1)):
        await asyncio.sleep(0.1)
        await asyncio.wait_for(a.tick(), 10)
        await b.tick()
    values = {s: await redis.get(keys.lease(s, STAGE)) for s in SYMBOLS}
    assert all(values[s] is not None and values[s].startswith(b"wa:") for s in SYMBOLS)
    assert sorted(a.owned) == kept
    assert released == []
    assert (await redis.zscore(keys.workers(STAGE), "wa")) is not None

    gate.set()  # the checkpoint is done: the leases go, and b takes them on its next tick
    for _ in range(50):
        await a.tick()
        await b.tick()
        if sorted(b.owned) == given:
            break
        await asyncio.sleep(0.05)
    assert sorted(released) == given
    assert sorted(b.owned) == given
    await a.leave()
    await b.leave()
