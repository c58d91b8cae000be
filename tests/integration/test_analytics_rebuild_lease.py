"""A long rebuild (no bars stored: the whole trades stream is folded) leaves the event loop free,
so the worker goes on renewing its lease instead of losing it mid-rebuild."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest
import redis.asyncio as aioredis

from of_analytics.fold import AnalyticsFold, AnalyticsState
from of_analytics.persist import AnalyticsStore
from of_analytics.rebuild import AnalyticsRebuild
from ofcommon import keys
from ofcommon.bus import Producer, ensure_group
from ofcommon.db import migrate
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import Message, Side, Trade
from ofcommon.ownership import Coordinator, Lease
from ofcommon.stage import Output, OwnedStage, StageTiming

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SYMBOL = "BTCUSDT"
TRADES = keys.stream(SYMBOL, "trades")
N = 6_000
T0 = 1_700_000_000 * 1_000_000_000


class CountingFold(AnalyticsFold):
    """The analytics fold, counting the steps it was given."""

    steps = 0

    def step(
        self, state: AnalyticsState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        self.steps += 1
        return super().step(state, kind, msg, at)


@pytest.fixture
def store(database_url: str) -> Iterator[AnalyticsStore]:
    migrate(database_url)
    with AnalyticsStore(database_url) as s:
        yield s


async def test_a_whole_stream_rebuild_leaves_the_event_loop_free(
    redis: aioredis.Redis, store: AnalyticsStore
) -> None:
    sides = (Side.BUY, Side.SELL)
    ts = [T0 + i * 10_000_000 for i in range(N)]
    trades = [Trade(t, t, 100.0 + i % 7, 1.0, sides[i % 2], str(i)) for i, t in enumerate(ts)]
    producer = Producer(redis, service="test", trim_by_age=False)
    for t in trades:
        producer.add(TRADES, t)
    await producer.flush()
    registry = load_registry()
    fold = CountingFold(registry)
    # As the stage leaves it: groups on both inputs, the trades all consumed, nothing stored.
    await ensure_group(redis, TRADES, fold.stage, start_id="$")
    await ensure_group(redis, keys.stream(SYMBOL, "book"), fold.stage)
    seen_mid_rebuild: list[int] = []
    done = asyncio.Event()

    async def loop_turns() -> None:  # stands for the ownership tick that renews the lease
        while not done.is_set():
            seen_mid_rebuild.append(fold.steps)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(loop_turns())
    try:
        rebuilt = await AnalyticsRebuild(fold, store, registry)(SYMBOL, redis)
    finally:
        done.set()
        await watcher
    assert rebuilt is not None
    assert fold.steps == N
    assert any(0 < n < N for n in seen_mid_rebuild), "the loop never ran during the rebuild"
    # The same state as folding the stream in one go.
    reference = AnalyticsFold(registry)
    state = reference.initial(SYMBOL)
    for t in trades:
        reference.step(state, "trades", t)
    assert reference.encode_state(rebuilt.state) == reference.encode_state(state)


class SlowFold(AnalyticsFold):
    """The analytics fold at about a millisecond a step: a rebuild of N trades outlives a lease."""

    def step(
        self, state: AnalyticsState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        time.sleep(0.001)
        return super().step(state, kind, msg, at)


@pytest.mark.slow
async def test_an_owner_keeps_its_lease_through_a_rebuild_longer_than_the_lease(
    redis: aioredis.Redis, store: AnalyticsStore
) -> None:
    producer = Producer(redis, service="test", trim_by_age=False)
    sides = (Side.BUY, Side.SELL)
    for i in range(N):  # N ms of fold work: longer than the lease below
        t = T0 + i * 10_000_000
        producer.add(TRADES, Trade(t, t, 100.0 + i % 7, 1.0, sides[i % 2], str(i)))
    await producer.flush()
    registry = load_registry()
    fold = SlowFold(registry)
    await ensure_group(redis, TRADES, fold.stage, start_id="$")
    await ensure_group(redis, keys.stream(SYMBOL, "book"), fold.stage)
    lease_ttl_s = 2.0
    assert 2 * lease_ttl_s < N * 0.001
    timing = StageTiming(checkpoint_interval_s=0.2, block_ms=50)
    stage: OwnedStage[AnalyticsState] = OwnedStage(
        redis,
        fold,
        service="analytics",
        timing=timing,
        rebuild=AnalyticsRebuild(fold, store, registry),
    )
    lost: list[int] = []

    async def on_lost(lease: Lease) -> None:
        lost.append(lease.generation)
        await stage.on_lost(lease)

    coordinator = Coordinator(
        redis,
        stage=fold.stage,
        worker_id="w1",
        eligible=[SYMBOL],
        on_acquire=stage.on_acquire,
        on_release=stage.on_release,
        on_lost=on_lost,
        tick_s=0.2,
        lease_ttl_s=lease_ttl_s,
        dead_after_s=lease_ttl_s,
    )
    snapshot = keys.snapshot(SYMBOL, fold.stage)
    try:
        async with asyncio.timeout(60):
            while not await redis.exists(snapshot) and not lost:
                await coordinator.tick()
                await asyncio.sleep(0.2)
    finally:
        await coordinator.leave()
    assert lost == []  # the lease outlived the rebuild: renewed between slices
    assert await redis.exists(snapshot)  # and the checkpoint after it was accepted
    assert (await redis.get(keys.lease_generation(SYMBOL, fold.stage))) == b"1"
