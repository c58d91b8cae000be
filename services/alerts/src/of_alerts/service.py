"""The alerts service: a consumer group (``alerts``) on every chosen instrument's trade events
and bias, each alert sent to Telegram once (``dispatch``), acknowledged only once settled.

Without a bot token or a chat it runs in a logged no-op mode: it reads nothing, so another,
configured worker of the group gets every event.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Final

from redis.exceptions import RedisError

from of_alerts.filters import Filters
from of_alerts.limiter import ChatLimiter, Stopped, pause
from of_alerts.record import SentRecord
from of_alerts.settings import AlertsSettings
from ofcommon import keys
from ofcommon.bus import DeadLetters, Entry, GroupReader, Redis
from ofcommon.entry_ids import parse
from ofcommon.instruments import load_registry
from ofcommon.service import Service, ServiceContext

if TYPE_CHECKING:
    from of_alerts.dispatch import Dispatcher

log = logging.getLogger(__name__)

GROUP: Final = "alerts"
INPUTS: Final = ("tradeevents", "bias")
REDIS_BACKOFF_MAX_S: Final = 5.0


async def _noop(ctx: ServiceContext[AlertsSettings], why: str) -> None:
    log.warning("no-op mode: %s; no alert is read or sent", why)
    ctx.status["state"] = f"no-op: {why}"
    await ctx.stop.wait()


async def _server_ms(redis: Redis) -> int:
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _handle(
    ctx: ServiceContext[AlertsSettings], dispatcher: Dispatcher, dead: DeadLetters, entry: Entry
) -> None:
    """Settle one entry. A bug on an entry dead-letters it instead of retrying it forever."""
    try:
        outcomes = await dispatcher.handle(entry, await _server_ms(ctx.redis))
    except (Stopped, OSError, RedisError):
        raise
    except Exception as err:
        log.error("%s %s: %s", entry.stream, entry.id, "".join(traceback.format_exception(err)))
        await dead.send(entry.stream, entry.id, f"alert-error: {err!r}", entry.raw)
        return
    for outcome in outcomes.values():
        ctx.status[outcome] = int(ctx.status.get(outcome, 0)) + 1


async def _consume(
    ctx: ServiceContext[AlertsSettings], reader: GroupReader, dispatcher: Dispatcher
) -> None:
    dead = DeadLetters(ctx.redis, "alerts")
    delay = 0.2
    batch: list[Entry] = []  # read, not yet acknowledged: retried in place after a Redis error
    while not ctx.stop.is_set():
        try:
            if not batch:
                # one read holds entries of both streams: in entry-ID order they follow event time
                batch = sorted(await reader.read(), key=lambda e: parse(e.id))
            while batch:
                await _handle(ctx, dispatcher, dead, batch[0])
                await reader.ack([batch[0]])
                batch.pop(0)
            delay = 0.2
        except Stopped:
            return
        except (OSError, RedisError) as err:
            log.warning("Redis error (%s); retrying in %.1f s", err, delay)
            try:
                await pause(delay, ctx.stop)
            except Stopped:
                return
            delay = min(delay * 2, REDIS_BACKOFF_MAX_S)


async def main(ctx: ServiceContext[AlertsSettings]) -> None:
    s = ctx.settings
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request, URL with token
    if not s.telegram_bot_token:
        await _noop(ctx, "OF_TELEGRAM_BOT_TOKEN is not set")
        return
    if not s.chat_ids():
        await _noop(ctx, "OF_TELEGRAM_CHAT_ID is not set")
        return
    # python-telegram-bot and matplotlib take seconds to import: only a working service pays
    from of_alerts.bot import Telegram
    from of_alerts.delivery import Delivery
    from of_alerts.dispatch import Dispatcher

    registry = load_registry(s.registry_file or None)
    symbols = [i.symbol for i in registry.select(s.instruments)]
    telegram = Telegram(
        s.telegram_bot_token.get(),
        s.telegram_api_url,
        timeout_s=s.telegram_timeout_s,
        rate=s.alerts_global_rate,
    )
    try:
        ctx.status["state"] = "starting: getMe"
        try:
            ready = await telegram.start(ctx.stop)
        except Stopped:
            return
        if not ready:
            await _noop(ctx, "Telegram refused OF_TELEGRAM_BOT_TOKEN")
            return
        reader = GroupReader(
            ctx.redis,
            [keys.stream(sym, kind) for sym in symbols for kind in INPUTS],
            GROUP,
            ctx.worker_id,
            service="alerts",
            count=50,
            claim_idle_ms=int(s.alerts_claim_idle_s * 1000),
        )
        await reader.start()
        delivery = Delivery(
            telegram,
            SentRecord(ctx.redis, ctx.worker_id),
            ChatLimiter(ctx.redis, s.alerts_chat_interval_s, lease_s=2 * s.telegram_timeout_s + 5),
            ctx.stop,
            resend_uncertain=s.alerts_resend_uncertain,
        )
        dispatcher = Dispatcher(
            ctx.redis,
            registry,
            Filters(
                types=s.types(),
                min_grade_rank=s.min_grade_rank(),
                max_age_ms=int(s.alerts_max_age_s * 1000),
            ),
            delivery,
            s.chat_ids(),
            chart_bars=s.alerts_chart_bars,
            quiet_warnings=s.alerts_quiet_warnings,
        )
        ctx.status.update(state=f"alerting @{telegram.username}", chats=len(s.chat_ids()))
        log.info(
            "alerting %d chats on %d instruments: %s",
            len(s.chat_ids()),
            len(symbols),
            ", ".join(sorted(s.types())),
        )
        await _consume(ctx, reader, dispatcher)
    finally:
        await telegram.close()


SERVICE = Service(name="alerts", settings_type=AlertsSettings, main=main, summary="Telegram alerts")
