"""The aggregator fold under the real stage worker and Redis: a bar the fold refuses becomes a
dead letter naming the reason, and the day around it still frames, enters and exits; the
consumed patterns reach the journal's hook and no stream."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from tests.unit.test_aggregator_fold import bar, inputs

from of_aggregator.fold import AggregatorFold
from ofcommon import codec, keys
from ofcommon.messages import Message, PatternSignal, TradeEvent
from ofcommon.ownership import Lease
from ofcommon.stage import InstrumentWorker, Refold, StageTiming

pytestmark = pytest.mark.redis

SYMBOL = "BTCUSDT"
LEASE = Lease(SYMBOL, "aggregator", 1)


async def test_a_refused_bar_is_dead_lettered_and_the_day_goes_on(redis: aioredis.Redis) -> None:
    ins = inputs()
    bad = bar(1, 59_700.0, 59_650.0, 59_620.0)  # low above high
    ins.insert(5, ("bars", bad))
    # Entry IDs in event order across the streams, a millisecond apart: with automatic IDs a
    # pattern and the next bar could share a millisecond, and the stage orders equal IDs bars
    # first, so the absorption would come late, after the bar that follows it (a flaky test).
    base = int(time.time() * 1000)
    for n, (kind, msg) in enumerate(ins):
        fields = {codec.FIELD: codec.encode(msg)}
        await redis.xadd(keys.stream(SYMBOL, kind), fields, id=f"{base + n}-0")
    await redis.set(keys.lease(SYMBOL, "aggregator"), LEASE.value)
    timing = StageTiming(checkpoint_interval_s=0.05, read_count=3, block_ms=50)
    events = keys.stream(SYMBOL, "tradeevents")

    async def exited() -> bool:
        msgs = [codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(events)]
        return any(isinstance(m, TradeEvent) and m.kind == "exit" for m in msgs)

    hooked: list[tuple[str, Message]] = []

    async def hook(symbol: str, outputs: list[tuple[str, Message]]) -> None:
        hooked.extend(outputs)

    restarts = 0
    async with asyncio.timeout(20):
        while not await exited():
            # As OwnedStage does: a worker that met a refused entry dead-letters it and ends
            # (Refold); the next one re-folds from the checkpoint without it.
            worker = InstrumentWorker(
                redis,
                AggregatorFold(),
                LEASE,
                service="aggregator",
                timing=timing,
                on_outputs=hook,
            )
            task = asyncio.create_task(worker.run())
            while True:  # until it ends (Refold) or the day is done
                if task.done() or await exited():
                    break
                await asyncio.sleep(0.05)
            worker.stop()
            try:
                await task
            except Refold:
                restarts += 1
    assert restarts == 1
    msgs = [codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(events)]
    assert all(isinstance(m, TradeEvent) for m in msgs)
    kinds = [m.kind for m in msgs if isinstance(m, TradeEvent)]
    assert kinds == ["bias", "watch", "entry", "exit"]
    dead = await redis.xrange(keys.dead_letters(SYMBOL))
    assert len(dead) == 1
    fields = dead[0][1]
    assert b"fold-error" in fields[b"reason"]
    assert b"outside low..high" in fields[b"reason"]
    assert fields[b"origin"] == keys.stream(SYMBOL, "bars").encode()
    # The absorption the trade was entered on went to the hook as a signal, and only there.
    sent = {m.signal_id for _, m in ins if isinstance(m, PatternSignal)}
    assert sent
    assert {
        m.signal_id for k, m in hooked if k == "consumed" and isinstance(m, PatternSignal)
    } == sent
    assert not await redis.exists(keys.stream(SYMBOL, "signals"))  # the reserved stream
    assert {k for k, _ in hooked} >= {"consumed", "tradeevents", "bias"}
    assert not [k for k in await redis.keys("*") if b"consumed" in k]
