"""A stage with two inputs folds them in entry-ID order, however its reads split them: entries of
one stream past another's last read wait (unacknowledged) until that stream has been read further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from ofcommon import codec, keys
from ofcommon.checkpoint import Fence
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.messages import Heartbeat, Message
from ofcommon.ownership import Lease
from ofcommon.stage import InstrumentWorker, Output, StageTiming, StructStateFold

pytestmark = pytest.mark.redis

SYMBOL = "ETHUSDT"
TRADES, BOOK = keys.stream(SYMBOL, "trades"), keys.stream(SYMBOL, "book")
LEASE = Lease(SYMBOL, "merging", 1)


class Seen(msgspec.Struct):
    ids: list[tuple[int, int]] = msgspec.field(default_factory=list)


class OrderFold(StructStateFold[Seen]):
    """Records the entry IDs in the order it is given them."""

    stage = "merging"
    inputs = ("trades", "book")
    state_type = Seen

    def initial(self, symbol: str) -> Seen:
        return Seen()

    def step(self, state: Seen, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        state.ids.append((at.ms, at.seq))
        return ()


@pytest.mark.parametrize("read_count", [1, 3, 7, 1000])
async def test_two_inputs_are_folded_in_entry_id_order(
    redis: aioredis.Redis, read_count: int
) -> None:
    # A dense trades stream and a sparse book stream, interleaved in time: reads of read_count
    # entries per stream would put whole runs of trades before older book entries.
    written: list[tuple[int, int]] = []
    for ms in range(1, 121):
        stream = BOOK if ms % 10 == 0 else TRADES
        await redis.xadd(stream, {codec.FIELD: codec.encode(Heartbeat(ms, ms, "t"))}, id=f"{ms}-0")
        written.append((ms, 0))
    await redis.set(keys.lease(SYMBOL, "merging"), LEASE.value)
    fold = OrderFold()
    timing = StageTiming(checkpoint_interval_s=0.05, read_count=read_count, block_ms=50)
    worker: InstrumentWorker[Seen] = InstrumentWorker(
        redis, fold, LEASE, service="merging", timing=timing
    )
    task = asyncio.create_task(worker.run())
    fence = Fence(redis, symbol=SYMBOL, stage="merging", streams=[], lease_value=LEASE.value)
    try:
        async with asyncio.timeout(20):
            while True:
                snap = await fence.load()
                seen = fold.initial(SYMBOL) if snap is None else fold.decode_state(snap.state)
                if len(seen.ids) == len(written):
                    break
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task
    assert seen.ids == written  # one order, whatever the read size
    for stream in (TRADES, BOOK):
        assert (await redis.xpending(stream, "merging"))["pending"] == 0


class HeldWatch(InstrumentWorker[Seen]):
    """The worker, recording how many read entries wait unfolded after each read."""

    most_held = 0

    def _release(
        self, batch: list[tuple[str, str, Any]], unread: Collection[str] = ()
    ) -> list[tuple[EntryId, str, str, Any]]:
        released = super()._release(batch, unread)
        self.most_held = max(self.most_held, len(self._held))
        return released


async def test_a_sparse_stream_is_not_read_ahead_while_its_entries_wait(
    redis: aioredis.Redis,
) -> None:
    # 2,000 trades and a book entry every 10 ms: each read of 10 book entries reaches 100 ms,
    # ten times as far as the trades'. Reading the book again while 9 of every 10 wait would
    # pile them up (and re-sort the pile at every read): the waiting entries stay one read's.
    read_count = 10
    written: list[tuple[int, int]] = []
    pipe = redis.pipeline(transaction=False)
    for ms in range(1, 2001):
        pipe.xadd(TRADES, {codec.FIELD: codec.encode(Heartbeat(ms, ms, "t"))}, id=f"{ms}-0")
        written.append((ms, 0))
        if ms % 10 == 0:
            pipe.xadd(BOOK, {codec.FIELD: codec.encode(Heartbeat(ms, ms, "b"))}, id=f"{ms}-1")
            written.append((ms, 1))
    await pipe.execute()
    await redis.set(keys.lease(SYMBOL, "merging"), LEASE.value)
    fold = OrderFold()
    timing = StageTiming(checkpoint_interval_s=0.05, read_count=read_count, block_ms=50)
    worker = HeldWatch(redis, fold, LEASE, service="merging", timing=timing)
    task = asyncio.create_task(worker.run())
    fence = Fence(redis, symbol=SYMBOL, stage="merging", streams=[], lease_value=LEASE.value)
    try:
        async with asyncio.timeout(60):
            while True:
                snap = await fence.load()
                seen = fold.initial(SYMBOL) if snap is None else fold.decode_state(snap.state)
                if len(seen.ids) == len(written):
                    break
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task
    assert seen.ids == written
    assert worker.most_held <= read_count
