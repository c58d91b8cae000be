"""An alert's context read back from real Redis streams: only final 1m bars closed by the event,
the bias in force, the patterns it names and its trade's earlier events, none of them later."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from tests.support import alert_market as m

from of_alerts import lookups

pytestmark = [pytest.mark.redis]


async def test_context_is_what_was_there_at_the_event(redis: aioredis.Redis) -> None:
    written = await m.publish(redis, partials=5)
    exit_ev = m.EVENTS[-1]
    entry_id = written.ids[exit_ev.event_id]
    ctx = await lookups.context(redis, m.SYMBOL, entry_id, exit_ev, tick=m.TICK, n_bars=20)
    expected = [b for b in m.bars() if b.close_ts <= exit_ev.ts_event][-20:]
    assert list(ctx.bars) == expected  # final bars only, oldest first: no partial leaked in
    assert ctx.bias == m.BIAS
    assert [e.event_id for e in ctx.history] == [
        "BTCUSDT-7",
        "BTCUSDT-8",
        "BTCUSDT-9",
        "BTCUSDT-10",
    ]

    entry = m.EVENTS[0]
    ctx = await lookups.context(
        redis, m.SYMBOL, written.ids[entry.event_id], entry, tick=m.TICK, n_bars=60
    )
    assert ctx.bars[-1].close_ts == entry.ts_event  # the entry bar, nothing after it
    assert len(ctx.bars) == 30
    assert ctx.patterns == {m.ABSORPTION.signal_id: m.ABSORPTION}
    assert ctx.history == ()


async def test_bias_before_its_frame_is_none(redis: aioredis.Redis) -> None:
    await m.publish(redis)
    before = m.BIAS.ts_event - 1
    assert await lookups.bias(redis, m.SYMBOL, "+", before) is None
    assert await lookups.bias(redis, m.SYMBOL, "+", m.BIAS.ts_event) == m.BIAS
