"""The stage hands its fold whole runs of one stream (``step_batch``): a folded run publishes
each entry's outputs under IDs derived from that entry, and a failing entry is dead-lettered while
the rest is folded (re-folded from the checkpoint without it), with or without a fold's own
``step_batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import msgspec
import pytest
import redis.asyncio as aioredis

from ofcommon import codec, keys
from ofcommon.checkpoint import Fence
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.messages import Message, Side, Trade
from ofcommon.ownership import Lease
from ofcommon.stage import (
    InstrumentWorker,
    Item,
    Output,
    Refold,
    StageTiming,
    StepFailed,
    StructStateFold,
)

pytestmark = pytest.mark.redis

SYMBOL = "ETHUSDT"
TRADES, ECHO = keys.stream(SYMBOL, "trades"), keys.stream(SYMBOL, "echo")
POISON = -1.0  # a trade of this size makes the fold raise


class Batches(msgspec.Struct):
    sizes: list[int] = msgspec.field(default_factory=list)  # len of each step_batch call
    total: float = 0.0


class EchoFold(StructStateFold[Batches]):
    """Echoes each trade twice (so IDs derive per input and output index); raises on POISON."""

    stage = "echo"
    inputs = ("trades",)
    state_type = Batches

    def initial(self, symbol: str) -> Batches:
        return Batches()

    def step(self, state: Batches, kind: str, msg: Message, at: EntryId = ZERO) -> Sequence[Output]:
        assert isinstance(msg, Trade)
        if msg.size == POISON:
            raise ValueError("poison trade")
        state.total += msg.size
        return (("echo", msg), ("echo", msg))


class BatchEchoFold(EchoFold):
    """The same fold with a ``step_batch`` of its own, recording the batch sizes it is given."""

    def step_batch(
        self, state: Batches, kind: str, items: Sequence[Item]
    ) -> list[Sequence[Output]]:
        state.sizes.append(len(items))
        done: list[Sequence[Output]] = []
        for i, (at, msg) in enumerate(items):
            try:
                done.append(self.step(state, kind, msg, at))
            except Exception as err:
                raise StepFailed(i, err, done) from err
        return done


def trade(n: int, size: float) -> Trade:
    return Trade(n, n, 100.0, size, Side.BUY, f"t{n}")


@pytest.mark.parametrize("fold", [EchoFold(), BatchEchoFold()], ids=["default", "own"])
async def test_a_failing_entry_is_dead_lettered_and_its_run_goes_on(
    redis: aioredis.Redis, fold: EchoFold
) -> None:
    sizes = [1.0, 2.0, POISON, 4.0, 5.0, POISON, 7.0]
    for n, size in enumerate(sizes, start=1):
        await redis.xadd(TRADES, {codec.FIELD: codec.encode(trade(n, size))}, id=f"{n}-0")
    lease = Lease(SYMBOL, "echo", 1)
    await redis.set(keys.lease(SYMBOL, "echo"), lease.value)
    timing = StageTiming(checkpoint_interval_s=0.05, read_count=1000, block_ms=50)
    fence = Fence(redis, symbol=SYMBOL, stage="echo", streams=[], lease_value=lease.value)
    good = [(n, s) for n, s in enumerate(sizes, start=1) if s != POISON]
    done = asyncio.Event()
    workers: list[InstrumentWorker[Batches]] = []

    async def supervise() -> None:
        # as OwnedStage does: a worker that gave up on a culprit is replaced from the checkpoint
        while not done.is_set():
            worker: InstrumentWorker[Batches] = InstrumentWorker(
                redis, fold, lease, service="echo", timing=timing
            )
            workers.append(worker)
            with contextlib.suppress(Refold):
                await worker.run()

    task = asyncio.create_task(supervise())
    try:
        async with asyncio.timeout(30):
            while True:
                snap = await fence.load()
                state = None if snap is None else fold.decode_state(snap.state)
                if state is not None and state.total == sum(s for _, s in good):
                    break
                await asyncio.sleep(0.02)
    finally:
        done.set()
        workers[-1].stop()
        await task
    echoed = await redis.xrange(ECHO)
    # Two outputs per good trade, IDs derived from the trade's own entry n-0: seq 0 and 1 (the
    # input's seq times the fan-out of 1024, plus the output's index).
    want = [(f"{n}-{i}", n, s) for n, s in good for i in range(2)]
    got = []
    for eid, f in echoed:
        m = codec.decode(f[codec.FIELD])
        assert isinstance(m, Trade)
        got.append((eid.decode(), m.ts_event, m.size))
    assert got == want
    dead = await redis.xrange(keys.dead_letters(SYMBOL))
    assert [f[b"origin_id"] for _, f in dead] == [b"3-0", b"6-0"]
    assert all(f[b"reason"] == b"fold-error: ValueError('poison trade')" for _, f in dead)
    assert (await redis.xpending(TRADES, "echo"))["pending"] == 0
    if isinstance(fold, BatchEchoFold):
        # the stage handed the fold whole reads, not one entry at a time
        assert state is not None
        assert max(state.sizes) > 1
