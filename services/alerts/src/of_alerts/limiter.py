"""The per-chat send limit Telegram asks for (about one message per second per chat), which
python-telegram-bot's ``AIORateLimiter`` does not enforce: it limits overall and per group only.

The gap is measured from the end of one request to the start of the next, so the server never
sees two messages to a chat closer than ``interval_s``, whatever the network's delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


class Stopped(Exception):
    """The service is stopping: the wait was given up (the event stays unacknowledged)."""


async def pause(seconds: float, stop: asyncio.Event) -> None:
    """Sleep ``seconds`` unless ``stop`` is set first (then raise ``Stopped``)."""
    if stop.is_set():
        raise Stopped
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    if stop.is_set():
        raise Stopped


class ChatLimiter:
    def __init__(
        self, interval_s: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._monotonic = monotonic
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, chat: str, stop: asyncio.Event) -> AsyncIterator[None]:
        """Hold the chat's turn: wait until its interval has passed since the last request
        ended; the next turn's interval starts when this one's block exits."""
        lock = self._locks.setdefault(chat, asyncio.Lock())
        async with lock:
            await pause(self._next.get(chat, 0.0) - self._monotonic(), stop)
            try:
                yield
            finally:
                self._next[chat] = self._monotonic() + self._interval
