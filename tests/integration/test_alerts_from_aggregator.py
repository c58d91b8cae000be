"""Alerts on what the real aggregator fold publishes: three hand-made BTCUSDT days (a rally to
the target, a stop-out, an exhaustion exit) through ``AggregatorFold``, written to the streams as
the stage would, then the alerts service against the local Bot API server."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from tests.integration.test_alerts_service import (
    CHAT,
    TOKEN,
    keyed,
    png_size,
    running,
    settings,
    until,
)
from tests.support.aggregator_market import market
from tests.support.fake_telegram import FakeTelegram

from of_aggregator.fold import AggregatorFold
from ofcommon import codec, keys
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, Bias, TradeEvent

pytestmark = [pytest.mark.redis]

SYMBOL = "BTCUSDT"
D1 = 1_704_067_200 * 1_000_000_000  # 2024-01-01 00:00 UTC
ALERTED = {"entry", "breakeven", "trail", "exit", "exit_warning"}


async def test_every_aggregator_event_is_alerted_once(redis: aioredis.Redis) -> None:
    fold = AggregatorFold()
    state = fold.initial(SYMBOL)
    expected: dict[str, TradeEvent | Bias] = {}
    first_bar_ts: int | None = None
    with FakeTelegram(TOKEN) as tg:
        async with running(redis, settings(tg.url, alerts_chart_bars=30)):
            for kind, msg in market(load_registry().get(SYMBOL), 60_000.0, D1, 3, seed=0):
                await redis.xadd(keys.stream(SYMBOL, kind), {codec.FIELD: codec.encode(msg)})
                if isinstance(msg, Bar) and first_bar_ts is None:
                    first_bar_ts = msg.close_ts
                for out in fold.step(state, kind, msg):
                    out_kind, out_msg = out[0], out[1]
                    if out_kind not in ("tradeevents", "bias"):
                        continue
                    stream = keys.stream(SYMBOL, out_kind)
                    await redis.xadd(stream, {codec.FIELD: codec.encode(out_msg)})
                    if isinstance(out_msg, Bias):
                        expected[f"bias-{out_msg.session_id}"] = out_msg
                    elif isinstance(out_msg, TradeEvent) and out_msg.kind in ALERTED:
                        expected[out_msg.event_id] = out_msg
            kinds = {e.kind for e in expected.values() if isinstance(e, TradeEvent)}
            # the market's exits are strong: no exit warning (tests/support/alert_market.py has one)
            assert kinds >= {"entry", "breakeven", "trail", "exit"}
            await until(lambda: len(tg.delivered()) >= len(expected), 90, "every alert")
        # in event order across the two streams (a read holds both: sorted by entry ID)
        order = [k for r in tg.delivered() for k in keyed([r])]
        assert order == list(expected)
        sent = keyed(tg.delivered())
        assert sorted(sent) == sorted(expected)
        assert all(len(v) == 1 for v in sent.values())
        assert first_bar_ts is not None
        for key, ev in expected.items():
            (r,) = sent[key]
            assert r.chat == CHAT
            if isinstance(ev, TradeEvent) or ev.ts_event >= first_bar_ts:
                assert r.photo is not None, key  # a chart wherever bars came before
                assert png_size(r.photo) == (800, 480)
            if isinstance(ev, TradeEvent) and ev.kind == "exit":
                assert ev.r_multiple is not None
                assert f"{ev.r_multiple:+.2f} R achieved" in r.text
                assert ev.reason.replace("_", " ") in r.text or "hit" in r.text
