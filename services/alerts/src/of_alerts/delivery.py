"""Delivering one message part to one chat, once: claim in the sent record, wait for the chat's
turn, send, settle. 429s wait ``retry_after``; failures before the request left are retried
with backoff; permanent errors are logged and counted; an uncertain one is never sent twice.

Returns the outcome for the record: ``sent``, ``failed``, ``uncertain`` or ``done before``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from telegram.error import RetryAfter, TelegramError

from of_alerts import metrics
from of_alerts.bot import BACKOFF_MAX_S, BACKOFF_S, describe, retry_after_s, verdict
from of_alerts.limiter import ChatLimiter, pause
from of_alerts.parts import Part
from of_alerts.record import SENDING, SentRecord, slot

log = logging.getLogger(__name__)

Outcome = Literal["sent", "failed", "uncertain", "before"]
RETRY_AFTER_MARGIN_S = 0.05


class Sender(Protocol):
    async def send(self, chat: str, part: Part) -> int: ...


@dataclass
class Delivery:
    sender: Sender
    record: SentRecord
    limiter: ChatLimiter
    stop: asyncio.Event
    resend_uncertain: bool = False

    async def deliver(
        self, symbol: str, key: str, alert_type: str, chat: str, part: Part
    ) -> Outcome:
        field = slot(chat, part.number)
        delay = BACKOFF_S
        what = f"{key} to chat {chat} (part {part.number})"
        while True:
            settled = await self.record.get(symbol, key, field)
            if settled is not None and not settled.startswith(SENDING):
                return await self._held(symbol, key, field, alert_type, what, settled)
            async with self.limiter.turn(chat, self.stop):
                token = self.record.token()
                held = await self.record.claim(symbol, key, field, token)
                if held is not None and held.startswith(SENDING) and self.resend_uncertain:
                    log.warning("%s: an earlier send was interrupted; resending", what)
                    await self.record.settle(symbol, key, field, token)
                    held = None
                if held is not None:
                    return await self._held(symbol, key, field, alert_type, what, held)
                try:
                    message_id = await self.sender.send(chat, part)
                except TelegramError as err:
                    failure: TelegramError | None = err
                else:
                    failure = None
            if failure is None:
                await self.record.settle(symbol, key, field, f"sent:{message_id}")
                metrics.SENT.labels(alert_type).inc()
                return "sent"
            kind = verdict(failure)
            if kind == "permanent":
                log.error("%s failed for good: %s", what, describe(failure))
                await self.record.settle(symbol, key, field, f"failed:{type(failure).__name__}")
                metrics.FAILED.labels(alert_type, type(failure).__name__).inc()
                return "failed"
            if kind == "uncertain" and not self.resend_uncertain:
                log.error(
                    "%s: delivery unknown (%s); not resent, so it is sent at most once",
                    what,
                    describe(failure),
                )
                await self.record.settle(symbol, key, field, "uncertain")
                metrics.UNCERTAIN.labels(alert_type).inc()
                return "uncertain"
            await self.record.release(symbol, key, field, token)
            if isinstance(failure, RetryAfter):
                wait = retry_after_s(failure) + RETRY_AFTER_MARGIN_S
                metrics.RETRIES.labels("retry_after").inc()
                log.warning("%s: Telegram asks to retry after %.0f s", what, wait)
            else:
                wait = delay
                delay = min(delay * 2, BACKOFF_MAX_S)
                metrics.RETRIES.labels("network").inc()
                log.warning("%s: %s; retrying in %.1f s", what, describe(failure), wait)
            await pause(wait, self.stop)

    async def _held(
        self, symbol: str, key: str, field: str, alert_type: str, what: str, held: str
    ) -> Outcome:
        if held.startswith(SENDING):
            # A worker died (or timed out) while its request was in flight: Telegram may have
            # the message already. Never twice: it is not sent again.
            log.error("%s: an earlier send was interrupted mid-request; not resent", what)
            await self.record.settle(symbol, key, field, "uncertain")
            metrics.UNCERTAIN.labels(alert_type).inc()
            return "uncertain"
        metrics.SKIPPED.labels("already_sent").inc()
        log.info("%s: already settled (%s); not sent again", what, held)
        return "before"
