"""The Telegram edge: python-telegram-bot's ``ExtBot`` with ``AIORateLimiter`` (30 messages/s
overall, Telegram's group limit), pointed at ``OF_TELEGRAM_API_URL``, and how its errors read.

Errors fall in three classes: ``RetryAfter`` (429) and errors where the request surely did not
reach Telegram are retried; permanent ones (bad chat, bot blocked, bad token) are given up;
the rest (a timeout or a connection lost after the request was written) are *uncertain*.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Final, Literal

import httpx
from telegram import InputFile
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, ExtBot
from telegram.request import HTTPXRequest

from of_alerts.limiter import pause
from of_alerts.parts import Part

log = logging.getLogger(__name__)
# PTB's documented opt-in to timedelta durations (RetryAfter.retry_after): without it every 429
# emits a deprecation warning, from inside RetryAfter's own constructor.
os.environ.setdefault("PTB_TIMEDELTA", "true")

Verdict = Literal["retry", "permanent", "uncertain"]
# httpx errors raised before the request was fully written: Telegram cannot have acted on it
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError)
_NOT_SENT_TIMEOUTS: Final = (httpx.WriteTimeout,)
_PERMANENT: Final = (BadRequest, Forbidden, InvalidToken, EndPointNotFound, ChatMigrated)
BACKOFF_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


def verdict(err: TelegramError) -> Verdict:
    """What to do about a failed request."""
    if isinstance(err, RetryAfter):
        return "retry"
    if isinstance(err, _PERMANENT):
        return "permanent"
    if isinstance(err, NetworkError):
        cause = err.__cause__
        if cause is None:  # an HTTP error reply (5xx, Bad Gateway): Telegram did not act on it
            return "retry"
        if isinstance(cause, _NOT_SENT + _NOT_SENT_TIMEOUTS):
            return "retry"
        return "uncertain"
    return "permanent"


def retry_after_s(err: RetryAfter) -> float:
    value = err.retry_after
    return value if isinstance(value, int | float) else value.total_seconds()


def describe(err: TelegramError) -> str:
    if isinstance(err, ChatMigrated):
        return f"chat migrated to {err.new_chat_id}: set OF_TELEGRAM_CHAT_ID to it"
    return f"{type(err).__name__}: {err.message}"


class Telegram:
    def __init__(self, token: str, api_url: str, *, timeout_s: float, rate: float) -> None:
        base = api_url.rstrip("/")
        request = HTTPXRequest(
            connection_pool_size=8,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            write_timeout=timeout_s,
            pool_timeout=timeout_s,
            media_write_timeout=timeout_s,
        )
        limiter: AIORateLimiter = AIORateLimiter(overall_max_rate=rate, overall_time_period=1)
        self.bot: ExtBot[Any] = ExtBot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=request,
            rate_limiter=limiter,
        )
        self.username = ""

    async def start(self, stop: asyncio.Event) -> bool:
        """``getMe`` until it answers: True when the token works, False when it is refused
        (then nothing can be sent). Raises ``Stopped`` if stopped meanwhile."""
        delay = BACKOFF_S
        while True:
            try:
                await self.bot.initialize()
            except (InvalidToken, Forbidden) as err:
                log.error("Telegram refused the bot token (%s): no alert will be sent", err)
                return False
            except TelegramError as err:
                log.warning("Telegram getMe failed (%s); retrying in %.1f s", err, delay)
                await pause(delay, stop)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self.username = self.bot.username
            log.info("Telegram bot @%s ready", self.username)
            return True

    async def send(self, chat: str, part: Part) -> int:
        """Send one part; the Telegram message id. Raises ``TelegramError``."""
        target: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
        if part.photo is not None:
            photo = InputFile(part.photo, filename="chart.png")
            msg = await self.bot.send_photo(
                target, photo, caption=part.text, disable_notification=part.silent
            )
        else:
            msg = await self.bot.send_message(target, part.text, disable_notification=part.silent)
        return msg.message_id

    async def close(self) -> None:
        try:
            await self.bot.shutdown()
        except TelegramError as err:  # closing the HTTP pool after a failed start
            log.debug("Telegram shutdown: %s", err)
