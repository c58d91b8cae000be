"""The per-chat send limit Telegram asks for (about one message per second per chat), which
python-telegram-bot's ``AIORateLimiter`` does not enforce: it limits overall and per group only.

A chat's turn is a Redis key (``keys.alert_chat_turn``), so the limit holds across every worker
of the group: taken with ``SET NX`` while a request is in flight (a lease that outlives the
request timeout, in case the worker dies), then left to expire ``interval_s`` after the request
ended. The server therefore never sees two messages to a chat closer than ``interval_s``,
whatever the network's delays; the expiry runs on the Redis server's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from typing import Final

from ofcommon import keys
from ofcommon.bus import Redis

BUSY: Final = "busy:"
POLL_S: Final = 0.02  # how often a waiting sender looks again while another request is in flight

_TAKE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
local held = redis.call('GET', KEYS[1]) or ''
return {0, redis.call('PTTL', KEYS[1]), held}
"""
_DONE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[2]) > 0 then
    return redis.call('SET', KEYS[1], 'idle', 'PX', ARGV[2])
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""


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
    def __init__(self, redis: Redis, interval_s: float, *, lease_s: float) -> None:
        self._redis = redis
        self._interval_ms = math.ceil(interval_s * 1000)
        self._lease_ms = int(lease_s * 1000)
        self._take = redis.register_script(_TAKE)
        self._done = redis.register_script(_DONE)
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, chat: str, stop: asyncio.Event) -> AsyncIterator[None]:
        """Hold the chat's turn: wait until no request to it is in flight and its interval has
        passed since the last one ended; the next interval starts when this block exits."""
        lock = self._locks.setdefault(chat, asyncio.Lock())
        async with lock:  # this process's senders queue here, not on Redis
            key = keys.alert_chat_turn(chat)
            token = f"{BUSY}{uuid.uuid4().hex}"
            while True:
                got, pttl, *held = await self._take(keys=[key], args=[token, self._lease_ms])
                if got:
                    break
                busy = bool(held) and bytes(held[0]).startswith(BUSY.encode())
                await pause(POLL_S if busy else max(int(pttl), 1) / 1000, stop)
            try:
                yield
            finally:
                await self._done(keys=[key], args=[token, self._interval_ms])
