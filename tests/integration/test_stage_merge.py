"""A stage with two inputs folds them in entry-ID order, however its reads split them: entries of
one stream past another's last read wait (unacknowledged) until that stream has been read further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
