"""An owned stage under faults against a real Redis: poison entries in the pending list, folds
that raise half-way, entries trimmed before the stage read them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ofcommon import codec, keys
from ofcommon.checkpoint import Fence
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.messages import Gap, Heartbeat, Message
from ofcommon.ownership import Lease
from ofcommon.stage import InstrumentWorker, Output, OwnedStage, StageTiming, StructStateFold

pytestmark = pytest.mark.redis

SYMBOL = "ADAUSDT"
STAGE = "faulty"
TRADES = keys.stream(SYMBOL, "trades")
LEASE = Lease(SYMBOL, "w1", 1)


class Crash(BaseException):
    """What the worker sees of a process killed while folding (not an ordinary fold error)."""


class Seen(msgspec.Struct):
    ts: list[int] = msgspec.field(default_factory=list)


class CrashingFold(StructStateFold[Seen]):
    """Records heartbeat times; dies on the heartbeat of time ``deadly``."""

    stage = STAGE
    inputs = ("trades",)
    state_type = Seen

    def __init__(self, deadly: int) -> None:
        self.deadly = deadly

    def initial(self, symbol: str) -> Seen:
        return Seen()

    def step(self, state: Seen, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        assert isinstance(msg, Heartbeat)
        if msg.ts_event == self.deadly:
            raise Crash
        state.ts.append(msg.ts_event)
        return ()


async def _snapshot(redis: aioredis.Redis, fold: CrashingFold) -> Seen:
    fence = Fence(redis, symbol=SYMBOL, stage=STAGE, streams=[], lease_value=LEASE.value)
    snap = await fence.load()
    return fold.initial(SYMBOL) if snap is None else fold.decode_state(snap.state)


async def _until_done_or_folded(
    task: asyncio.Task[None], redis: aioredis.Redis, fold: CrashingFold, n: int
) -> None:
    """Wait until the worker died, or its checkpoint holds ``n`` folded entries."""
    while not task.done():
        if len((await _snapshot(redis, fold)).ts) >= n:
            return
        await asyncio.wait({task}, timeout=0.01)


async def test_a_poison_entry_in_the_pending_list_is_dead_lettered_and_the_rest_folded_once(
    redis: aioredis.Redis,
) -> None:
    written = list(range(1, 11))
    for ts in written:
        await redis.xadd(TRADES, {codec.FIELD: codec.encode(Heartbeat(ts, ts, "t"))}, id=f"{ts}-0")
    await redis.set(keys.lease(SYMBOL, STAGE), LEASE.value)
    deadly, limit = 5, 3
    fold = CrashingFold(deadly)
    timing = StageTiming(checkpoint_interval_s=0.05, block_ms=20, max_deliveries=limit)
    crashes = 0
    expected = [ts for ts in written if ts != deadly]
    async with asyncio.timeout(30):
        while True:  # each round is a restart of the killed worker, from its checkpoint
            worker: InstrumentWorker[Seen] = InstrumentWorker(
                redis, fold, LEASE, service=STAGE, timing=timing
            )
            task = asyncio.create_task(worker.run())
            await _until_done_or_folded(task, redis, fold, len(expected))
            if task.done():
                with pytest.raises(Crash):
                    task.result()
                crashes += 1
                continue
            worker.stop()
            await task
            break
    # Delivered once as new and limit - 1 times in bulk from the pending list, once more alone:
    # then it is known as the culprit.
    assert crashes == limit + 1
    assert (await _snapshot(redis, fold)).ts == expected  # each innocent entry exactly once
    dead = await redis.xrange(keys.dead_letters(SYMBOL))
    assert [f[b"origin_id"] for _, f in dead] == [f"{deadly}-0".encode()]
    assert dead[0][1][b"reason"].startswith(b"poison: delivered")
    assert (await redis.xpending(TRADES, STAGE))["pending"] == 0


class Tally(msgspec.Struct):
    count: int = 0
    total: int = 0


class HalfwayFold(StructStateFold[Tally]):
    """Counts heartbeats and sums their times; on a heartbeat from source "bad" it raises after
    counting it, so its state is half-applied; from "huge" it returns an output that cannot be
    encoded. Echoes each heartbeat it takes to ``signals``."""

    stage = STAGE
    inputs = ("trades",)
    state_type = Tally

    def initial(self, symbol: str) -> Tally:
        return Tally()

    def step(self, state: Tally, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        assert isinstance(msg, Heartbeat)
        state.count += 1
        if msg.source == "bad":
            raise ValueError("refused after counting")
        state.total += msg.ts_event
        if msg.source == "huge":
            return [("signals", Heartbeat(2**70, msg.ts_recv, msg.source))]  # msgpack: > 2**64
        return [("signals", msg)]


@pytest.mark.parametrize("checkpoint_every", [1, 4, 1000])
async def test_a_fold_that_raises_half_way_leaves_no_trace_of_the_entry(
    redis: aioredis.Redis, checkpoint_every: int
) -> None:
    sources = {5: "bad", 7: "huge", 9: "bad"}
    sent = [Heartbeat(ts, ts, sources.get(ts, "feed")) for ts in range(1, 13)]
    for msg in sent:
        await redis.xadd(TRADES, {codec.FIELD: codec.encode(msg)}, id=f"{msg.ts_event}-0")
    await redis.set(keys.lease(SYMBOL, STAGE), LEASE.value)
    good = [m for m in sent if m.source == "feed"]
    fold = HalfwayFold()
    timing = StageTiming(checkpoint_interval_s=60, checkpoint_every=checkpoint_every, block_ms=20)
    stage: OwnedStage[Tally] = OwnedStage(redis, fold, service=STAGE, timing=timing)
    await stage.on_acquire(LEASE)
    fence = Fence(redis, symbol=SYMBOL, stage=STAGE, streams=[], lease_value=LEASE.value)
    try:
        async with asyncio.timeout(30):
            while True:
                if len(await redis.xrange(keys.stream(SYMBOL, "signals"))) >= len(good):
                    break
                await asyncio.sleep(0.02)
    finally:
        await stage.on_release(LEASE)
    snap = await fence.load()
    assert snap is not None
    state = fold.decode_state(snap.state)
    assert (state.count, state.total) == (len(good), sum(m.ts_event for m in good))
    echoed = [
        codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(keys.stream(SYMBOL, "signals"))
    ]
    assert echoed == good  # every good entry once: re-published outputs were refused
    dead = await redis.xrange(keys.dead_letters(SYMBOL))
    assert [f[b"origin_id"] for _, f in dead] == [b"5-0", b"7-0", b"9-0"]
    reasons = [f[b"reason"].split(b"(")[0] for _, f in dead]
    assert reasons == [
        b"fold-error: ValueError",
        b"fold-error: OverflowError",
        b"fold-error: ValueError",
    ]
    assert (await redis.xpending(TRADES, STAGE))["pending"] == 0


class Journal(msgspec.Struct):
    seen: list[tuple[str, int]] = msgspec.field(default_factory=list)  # (tag, ts_event)


class JournalFold(StructStateFold[Journal]):
    """Records what it is given; echoes each heartbeat (not a gap) to ``signals``."""

    stage = STAGE
    inputs = ("trades",)
    state_type = Journal

    def initial(self, symbol: str) -> Journal:
        return Journal()

    def step(self, state: Journal, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        assert isinstance(msg, Heartbeat | Gap)
        state.seen.append((type(msg).__name__, msg.ts_event))
        return [("signals", msg)] if isinstance(msg, Heartbeat) else []


async def _run_until_consumed(
    redis: aioredis.Redis, fold: JournalFold, timing: StageTiming
) -> None:
    """One worker until the group has read the whole trades stream, then stopped."""
    [(top, _)] = await redis.xrevrange(TRADES, count=1)
    worker: InstrumentWorker[Journal] = InstrumentWorker(
        redis, fold, LEASE, service=STAGE, timing=timing
    )
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while True:
                groups = await redis.xinfo_groups(TRADES)
                if groups and groups[0]["last-delivered-id"] == top and not groups[0]["pending"]:
                    break
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task


async def test_entries_trimmed_before_the_stage_read_them_give_a_gap_on_its_outputs(
    redis: aioredis.Redis,
) -> None:
    await redis.set(keys.lease(SYMBOL, STAGE), LEASE.value)
    fold = JournalFold()
    timing = StageTiming(checkpoint_interval_s=0.05, block_ms=20)

    async def send(ts_range: range) -> None:
        for ts in ts_range:
            msg = Heartbeat(ts, ts, "t")
            await redis.xadd(TRADES, {codec.FIELD: codec.encode(msg)}, id=f"{ts}-0")

    await send(range(1, 11))
    await _run_until_consumed(redis, fold, timing)
    # The stage is away; the feed goes on and its MAXLEN cuts entries the stage never read.
    await send(range(11, 21))
    await redis.xtrim(TRADES, maxlen=4, approximate=False)
    before = REGISTRY.get_sample_value(
        "of_trimmed_unread_total", {"service": STAGE, "kind": "trades"}
    )
    await _run_until_consumed(redis, fold, timing)

    lost = list(range(11, 17))  # after the stage's position, before what the stream still holds
    snap = await Fence(
        redis, symbol=SYMBOL, stage=STAGE, streams=[], lease_value=LEASE.value
    ).load()
    assert snap is not None
    seen = fold.decode_state(snap.state).seen
    heartbeats = [("Heartbeat", ts) for ts in range(1, 21) if ts not in lost]
    # The gap is folded where it is, stamped with the event time of the first entry after it.
    assert seen == [*heartbeats[:10], ("Gap", 17), *heartbeats[10:]]
    published = [
        codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(keys.stream(SYMBOL, "signals"))
    ]
    gaps = [m for m in published if isinstance(m, Gap)]
    assert len(gaps) == 1
    assert gaps[0].stream == "trades"
    assert f"trimmed: {len(lost)} entries after 10-0" in gaps[0].reason
    assert [m.ts_event for m in published] == [*range(1, 11), 17, *range(17, 21)]
    after = REGISTRY.get_sample_value(
        "of_trimmed_unread_total", {"service": STAGE, "kind": "trades"}
    )
    assert (after or 0) - (before or 0) == len(lost)
    [group] = await redis.xinfo_groups(TRADES)
    assert group["lag"] == 0


class GapRefusingFold(JournalFold):
    """A JournalFold with a bug: it counts a Gap, then raises on it."""

    def step(self, state: Journal, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        out = super().step(state, kind, msg, at)
        if isinstance(msg, Gap):
            raise RuntimeError("gap handling bug")
        return out


async def test_a_fold_that_fails_on_the_trim_gap_does_not_loop_on_it(
    redis: aioredis.Redis,
) -> None:
    await redis.set(keys.lease(SYMBOL, STAGE), LEASE.value)
    fold = GapRefusingFold()
    timing = StageTiming(checkpoint_interval_s=0.05, block_ms=20)
    for ts in range(1, 21):
        msg = Heartbeat(ts, ts, "t")
        await redis.xadd(TRADES, {codec.FIELD: codec.encode(msg)}, id=f"{ts}-0")
        if ts == 10:
            await _run_until_consumed(redis, fold, timing)
    await redis.xtrim(TRADES, maxlen=4, approximate=False)
    stage: OwnedStage[Journal] = OwnedStage(redis, fold, service=STAGE, timing=timing)
    await stage.on_acquire(LEASE)
    try:
        async with asyncio.timeout(30):
            while True:
                [group] = await redis.xinfo_groups(TRADES)
                if group["last-delivered-id"] == b"20-0" and not group["pending"]:
                    break
                await asyncio.sleep(0.02)
    finally:
        await stage.on_release(LEASE)
    snap = await Fence(
        redis, symbol=SYMBOL, stage=STAGE, streams=[], lease_value=LEASE.value
    ).load()
    assert snap is not None
    # The half-applied Gap is gone with the state it was in; the rest is folded once.
    expected = [("Heartbeat", ts) for ts in [*range(1, 11), *range(17, 21)]]
    assert fold.decode_state(snap.state).seen == expected
