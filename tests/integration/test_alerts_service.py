"""The alerts service against real Redis and a real local Bot API server (tests/support):
every alert type's text and chart, 429 with retry_after, the per-chat rate, permanent and
uncertain errors, network retries, the filters, redelivery without a second send, no-op mode.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from PIL import Image
from prometheus_client import REGISTRY
from redis.exceptions import ResponseError
from tests.support import alert_market as m
from tests.support.fake_telegram import FakeTelegram, Received
from tests.support.servers import free_port

from of_alerts.bot import Telegram
from of_alerts.limiter import ChatLimiter
from of_alerts.parts import Part
from of_alerts.service import GROUP, main
from of_alerts.settings import AlertsSettings
from ofcommon import codec, keys
from ofcommon.messages import TradeEvent
from ofcommon.service import ServiceContext
from ofcommon.settings import Secret

pytestmark = [pytest.mark.redis]

TOKEN = "123456:test-token"
CHAT, OTHER = "1001", "-2002"
KEYS = ["bias-2024-03-04", "BTCUSDT-7", "BTCUSDT-8", "BTCUSDT-9", "BTCUSDT-10", "BTCUSDT-11"]


def settings(url: str, **extra: Any) -> AlertsSettings:
    base: dict[str, Any] = {
        "telegram_bot_token": Secret(TOKEN),
        "telegram_chat_id": CHAT,
        "telegram_api_url": url,
        "instruments": m.SYMBOL,
        "alerts_chat_interval_s": 0.05,
        "alerts_claim_idle_s": 1.0,
        "log_format": "text",
    }
    base.update(extra)
    return AlertsSettings(**base)


@asynccontextmanager
async def running(
    redis: aioredis.Redis, s: AlertsSettings, worker: str = "w1"
) -> AsyncIterator[ServiceContext[AlertsSettings]]:
    ctx = ServiceContext(
        name="alerts", settings=s, redis=redis, worker_id=worker, stop=asyncio.Event()
    )
    task = asyncio.create_task(main(ctx))
    try:
        yield ctx
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, 30)


async def until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def settled(redis: aioredis.Redis, seconds: float = 30) -> None:
    """Every entry of the inputs delivered to the group and acknowledged."""
    streams = [keys.stream(m.SYMBOL, k) for k in ("tradeevents", "bias")]
    deadline = time.monotonic() + seconds
    while True:
        done = True
        for stream in streams:
            try:
                groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
            except ResponseError:  # the service has not created its groups yet
                groups = {}
            top = await redis.xrevrange(stream, count=1)
            g = groups.get(GROUP)
            if g is None or g["pending"] or (top and g["last-delivered-id"] != top[0][0]):
                done = False
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the alerts group did not settle")
        await asyncio.sleep(0.05)


def keyed(sends: list[Received]) -> dict[str, list[Received]]:
    """Sends by the event key in their last line."""
    out: dict[str, list[Received]] = {}
    for r in sends:
        key = r.text.rsplit(" · ", 1)[-1].strip()
        out.setdefault(key, []).append(r)
    return out


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes every pixel: a truncated PNG raises here
        assert img.format == "PNG"
        return img.size


async def test_every_alert_type_arrives_once_with_text_and_chart(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        async with running(redis, settings(tg.url)):
            await m.publish(redis)
            await until(lambda: len(tg.delivered()) >= 6, 60, "six alerts")
            await settled(redis)
        assert len(tg.calls("getMe")) == 1
        sent = keyed(tg.delivered())
        assert sorted(sent) == sorted(KEYS)
        assert all(len(v) == 1 for v in sent.values())
        for key in KEYS:
            (r,) = sent[key]
            assert r.method == "sendPhoto"
            assert r.chat == CHAT
            assert r.photo is not None
            assert 10_000 < len(r.photo) < 400_000
            assert png_size(r.photo) == (800, 480)
        header = {k: sent[k][0].text.splitlines()[0] for k in KEYS}
        assert header == {
            "bias-2024-03-04": "🧭 DAILY BIAS · BTCUSDT",
            "BTCUSDT-7": "🎯 ENTRY SIGNAL · BTCUSDT",
            "BTCUSDT-8": "🔒 BREAK EVEN · BTCUSDT",
            "BTCUSDT-9": "📈 TRAIL UPDATE · BTCUSDT",
            "BTCUSDT-10": "⚠️ EXIT WARNING · BTCUSDT",
            "BTCUSDT-11": "🚪 EXIT SIGNAL · BTCUSDT",
        }
        entry = sent["BTCUSDT-7"][0].text
        rr = (m.TARGET - m.ENTRY) / (m.ENTRY - m.STOP)
        closed = [b for b in m.bars() if b.close_ts <= m.EVENTS[0].ts_event][-1]
        for part in (
            "🟢 LONG",
            "grade A",
            "score 72/100",
            "Absorption 🟢 LONG @ 64,010.0 (strength 78)",
            f"Delta +{closed.delta:g} · volume {closed.volume:g}",
            "Bias: 🟢 LONG 62.5% · p_shape",
            f"Entry {m.ENTRY:,.1f} · SL {m.STOP:,.1f} · TP {m.TARGET:,.1f}",
            f"R:R 1:{rr:.2f}",
            "2024-03-05 15:00:00 UTC",
        ):
            assert part in entry, (part, entry)
        be = sent["BTCUSDT-8"][0].text
        assert f"SL moved to entry {m.ENTRY:,.1f}" in be
        assert f"+{(m.BE_PRICE - m.ENTRY) / m.RISK:.2f} R" in be
        trail = sent["BTCUSDT-9"][0].text
        assert f"New SL {m.TRAIL_STOP:,.1f} (was {m.ENTRY:,.1f})" in trail
        locked_ticks = round((m.TRAIL_STOP - m.ENTRY) / m.TICK)
        assert (
            f"Locked in +{locked_ticks} ticks (+{(m.TRAIL_STOP - m.ENTRY) / m.RISK:.2f} R)" in trail
        )
        warn = sent["BTCUSDT-10"][0].text
        assert "Exhaustion 🔴 SHORT @ 64,074.0 (strength 55)" in warn
        assert "volume_decline: 0.42" in warn
        exit_text = sent["BTCUSDT-11"][0].text
        assert f"P&L +{round(m.PNL / m.TICK)} ticks · +{m.PNL / m.RISK:.2f} R achieved" in exit_text
        assert "take profit hit" in exit_text
        assert "held 0 h 14 min" in exit_text
        bias = sent["bias-2024-03-04"][0].text
        for part in (
            "confidence 62.5%",
            "POC 64,040.0 · VAH 64,090.0 · VAL 64,010.0",
            "Merged VA 64,000.0 – 64,096.0",
            "VAL 64,010.0 → LONG (50)",
            "Warnings: vah rejection",
        ):
            assert part in bias, (part, bias)
        assert all(not r.params.get("disable_notification") for r in tg.delivered())


async def test_429_waits_retry_after_and_sends_once(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        tg.state.retry_after = [1, 2]  # the first two sends: 429 retry after 1 s, then 2 s
        async with running(redis, settings(tg.url)):
            await m.publish(redis, kinds=frozenset({"bias"}))
            await until(lambda: len(tg.delivered()) >= 1, 30, "the bias alert")
            await settled(redis)
        first, second, third = tg.sends()
        assert (first.status, second.status, third.status) == (429, 429, 200)
        assert second.at - first.at >= 1.0  # honoured retry_after=1
        assert third.at - second.at >= 2.0  # and retry_after=2
        assert first.text == second.text == third.text
        assert len(tg.delivered()) == 1


async def test_per_chat_rate_is_never_exceeded(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        s = settings(
            tg.url,
            telegram_chat_id=f"{CHAT},{OTHER}",
            alerts_chat_interval_s=1.0,
            alerts_chart_bars=0,
        )
        async with running(redis, s):
            await m.publish(redis)
            await until(lambda: len(tg.delivered()) >= 12, 60, "six alerts to two chats")
            await settled(redis)
        for chat in (CHAT, OTHER):
            times = [r.at for r in tg.sends(chat)]
            assert len(times) == 6
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= 1.0, gaps  # one message per second per chat, at the server
        # the chats are served side by side, not one after the other
        both = sorted(r.at for r in tg.sends())
        assert both[-1] - both[0] < 2 * 6 * 1.0


async def test_permanent_error_is_given_up_and_other_chats_still_served(
    redis: aioredis.Redis,
) -> None:
    with FakeTelegram(TOKEN) as tg:
        tg.state.failing[OTHER] = (400, "Bad Request: chat not found")
        s = settings(tg.url, telegram_chat_id=f"{CHAT},{OTHER}", alerts_chart_bars=0)
        labels = {"type": "bias", "error": "BadRequest"}
        before = REGISTRY.get_sample_value("of_alerts_failed_total", labels) or 0.0
        async with running(redis, s) as ctx:
            await m.publish(redis, kinds=frozenset({"bias"}))
            await until(lambda: len(tg.delivered(CHAT)) >= 1, 30, "the good chat's alert")
            await settled(redis)
            assert ctx.status.get("failed") == 1
        assert [r.status for r in tg.sends(OTHER)] == [400]  # tried once, never again
        assert REGISTRY.get_sample_value("of_alerts_failed_total", labels) == before + 1
        record = await redis.hgetall(keys.alert_record(m.SYMBOL, "bias-2024-03-04"))
        assert record[f"{OTHER}:0".encode()] == b"failed:BadRequest"
        assert record[f"{CHAT}:0".encode()].startswith(b"sent:")


async def test_dropped_connection_is_uncertain_and_not_resent(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        tg.state.drop_next = 1  # the server reads the first send, then hangs up
        async with running(redis, settings(tg.url, alerts_chart_bars=0)) as ctx:
            await m.publish(redis, kinds=frozenset({"bias", "tradeevents"}))
            await until(lambda: len(tg.delivered()) >= 5, 60, "the other five alerts")
            await settled(redis)
            assert ctx.status.get("uncertain") == 1
        assert len(tg.sends()) == 6  # the dropped one was not sent again
        assert sorted(keyed(tg.sends())) == sorted(KEYS)


async def test_resend_uncertain_sends_it_again(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        tg.state.drop_next = 1
        s = settings(tg.url, alerts_chart_bars=0, alerts_resend_uncertain=True)
        async with running(redis, s):
            await m.publish(redis, kinds=frozenset({"bias"}))
            await until(lambda: len(tg.delivered()) >= 1, 30, "the resent alert")
            await settled(redis)
        first, second = tg.sends()
        assert (first.status, second.status) == (0, 200)
        assert first.text == second.text


async def test_network_errors_are_retried_until_telegram_answers(redis: aioredis.Redis) -> None:
    port = free_port()
    late = FakeTelegram(TOKEN, port=port)
    s = settings(f"http://127.0.0.1:{port}", alerts_chart_bars=0)
    async with running(redis, s) as ctx:
        await m.publish(redis, kinds=frozenset({"bias"}))
        await asyncio.sleep(1.5)  # getMe is refused meanwhile and retried with backoff
        assert ctx.status["state"] == "starting: getMe"
        with late:
            await until(lambda: len(late.delivered()) >= 1, 30, "the alert after the outage")
            await settled(redis)
            assert len(late.sends()) == 1


async def test_filters_by_type_grade_and_age(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        # grade A passes min B; a grade C entry of another trade does not
        low = msgspec.structs.replace(m.EVENTS[0], event_id="BTCUSDT-99", trade_id="t2", grade="C")
        s = settings(tg.url, alerts_types="entry,exit", alerts_min_grade="B", alerts_chart_bars=0)
        async with running(redis, s):
            await m.publish(redis)
            stream = keys.stream(m.SYMBOL, "tradeevents")
            await redis.xadd(stream, {codec.FIELD: codec.encode(low)})
            await until(lambda: len(tg.delivered()) >= 2, 30, "entry and exit")
            await settled(redis)
        assert sorted(keyed(tg.delivered())) == ["BTCUSDT-11", "BTCUSDT-7"]


async def test_stale_events_are_skipped(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        s = settings(tg.url, instruments="BTCUSDT,EURUSD", alerts_chart_bars=0)
        stream = keys.stream("EURUSD", "tradeevents")
        fx = msgspec.structs.replace(
            m.EVENTS[0], price=1.08543, stop=1.08501, target=1.0865, level_price=1.0854
        )
        old_ms = int(time.time() * 1000) - 2 * 3600 * 1000  # reached Redis two hours ago
        old = msgspec.structs.replace(fx, event_id="EURUSD-1")
        await redis.xadd(stream, {codec.FIELD: codec.encode(old)}, id=f"{old_ms}-0")
        fresh = msgspec.structs.replace(fx, event_id="EURUSD-2")
        await redis.xadd(stream, {codec.FIELD: codec.encode(fresh)})
        async with running(redis, s):
            await until(lambda: len(tg.delivered()) >= 1, 30, "the fresh entry")
            await asyncio.sleep(0.3)
        assert list(keyed(tg.delivered())) == ["EURUSD-2"]
        # FX keeps its five decimals (the seed printed two)
        assert "Entry 1.08543 · SL 1.08501 · TP 1.08650" in tg.delivered()[0].text
        groups = await redis.xinfo_groups(stream)
        assert groups[0]["pending"] == 0  # the stale one was acknowledged, not left behind


async def test_redelivered_event_is_not_sent_twice(redis: aioredis.Redis) -> None:
    """An entry re-read after a crash (sent, not acknowledged) finds its record and is skipped."""
    with FakeTelegram(TOKEN) as tg:
        await m.publish(redis, kinds=frozenset({"bias"}))
        s = settings(tg.url, alerts_chart_bars=0)
        async with running(redis, s):
            await until(lambda: len(tg.delivered()) >= 1, 30, "the bias alert")
            await settled(redis)
        # a crash between the send and the ack: make the entry pending again for a new worker
        stream = keys.stream(m.SYMBOL, "bias")
        await redis.xgroup_setid(stream, GROUP, "0")
        async with running(redis, s, worker="w2"):
            await settled(redis)
            await asyncio.sleep(0.3)
        assert len(tg.sends()) == 1


async def test_no_token_is_a_logged_no_op(
    redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await m.publish(redis, kinds=frozenset({"bias"}))
    s = AlertsSettings(instruments=m.SYMBOL)
    with caplog.at_level("INFO"):
        async with running(redis, s) as ctx:
            await asyncio.sleep(0.5)
            assert ctx.status["state"] == "no-op: OF_TELEGRAM_BOT_TOKEN is not set"
    said = [r for r in caplog.records if "no-op mode" in r.getMessage()]
    assert len(said) == 1
    # nothing was consumed: a configured worker of the group still gets every event
    assert await redis.xinfo_groups(keys.stream(m.SYMBOL, "bias")) == []


async def test_trade_event_kinds_not_alerted_are_acknowledged(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        stream = keys.stream(m.SYMBOL, "tradeevents")
        watch = TradeEvent("BTCUSDT-1", "t", m.T0, "watch", m.EVENTS[0].direction, 64_010.0)
        await redis.xadd(stream, {codec.FIELD: codec.encode(watch)})
        await redis.xadd(stream, {codec.FIELD: b"\xc1not msgpack"})
        # an event the service cannot handle (no key can be formed from its id): dead-lettered
        bad = msgspec.structs.replace(m.EVENTS[0], event_id="no spaces allowed")
        await redis.xadd(stream, {codec.FIELD: codec.encode(bad)})
        async with running(redis, settings(tg.url, alerts_chart_bars=0)):
            await settled(redis)
        assert tg.sends() == []
        dead = await redis.xrange(keys.dead_letters(m.SYMBOL))
        reasons = sorted(d[1][b"reason"].decode() for d in dead)
        assert len(reasons) == 2
        assert reasons[0].startswith('alert-error: ValueError("invalid alert event key')
        assert reasons[1].startswith("undecodable")


async def test_per_chat_rate_holds_across_workers(redis: aioredis.Redis) -> None:
    """Two workers (two limiters, two bots) sending to one chat at once: the chat's turn is in
    Redis, so the server still sees the interval between any two of their messages."""
    interval = 0.5
    with FakeTelegram(TOKEN) as tg:
        workers = []
        for _ in range(2):
            bot = Telegram(TOKEN, tg.url, timeout_s=10, rate=30)
            assert await bot.start(asyncio.Event())
            workers.append((bot, ChatLimiter(redis, interval, lease_s=25)))
        stop_ = asyncio.Event()

        async def burst(bot: Telegram, limiter: ChatLimiter, who: int) -> None:
            for n in range(4):
                async with limiter.turn(CHAT, stop_):
                    await bot.send(CHAT, Part(0, f"worker {who} message {n}"))

        try:
            await asyncio.gather(*(burst(b, lim, i) for i, (b, lim) in enumerate(workers)))
        finally:
            for bot, _ in workers:
                await bot.close()
        times = [r.at for r in tg.delivered(CHAT)]
        assert len(times) == 8
        assert {r.text.split()[1] for r in tg.delivered(CHAT)} == {"0", "1"}
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= interval, gaps


async def test_quiet_mode_silences_exit_warnings_only(redis: aioredis.Redis) -> None:
    with FakeTelegram(TOKEN) as tg:
        s = settings(tg.url, alerts_quiet_warnings=True, alerts_chart_bars=0)
        async with running(redis, s):
            await m.publish(redis)
            await until(lambda: len(tg.delivered()) >= 6, 60, "six alerts")
            await settled(redis)
        silent = {
            k for k, (r,) in keyed(tg.delivered()).items() if r.params.get("disable_notification")
        }
        assert silent == {"BTCUSDT-10"}  # the exit warning
