"""Latest state from the streams: the newest entries of one instrument's stream, decoded.

Reads with ``XREVRANGE`` (no consumer group); undecodable entries are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from ofcommon import codec, keys
from ofcommon.bus import Redis
from ofcommon.messages import Message

M = TypeVar("M", bound=Message)

PAGE: Final = 500
MAX_SCAN: Final = 20_000  # entries looked back through for one kind of message at most


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Live:
    """Reads the newest messages of a stream; one instance per app, sharing the Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.undecodable = 0

    async def recent(
        self,
        symbol: str,
        kind: str,
        want: type[M] | tuple[type[M], ...],
        limit: int,
        *,
        where: Callable[[M], bool] | None = None,
        max_scan: int = MAX_SCAN,
        before: str = "+",
    ) -> list[tuple[str, M]]:
        """Up to ``limit`` (entry id, message) of type ``want`` passing ``where``, newest first,
        looking back through at most ``max_scan`` entries."""
        key = keys.stream(symbol, kind)
        out: list[tuple[str, M]] = []
        scanned = 0
        top = before
        while len(out) < limit and scanned < max_scan:
            page = min(PAGE, max_scan - scanned)
            reply: Any = await self.redis.xrevrange(key, top, "-", count=page)
            if not reply:
                break
            for raw_id, fields in reply:
                entry_id = _s(raw_id)
                data = fields.get(codec.FIELD)
                if data is None:
                    self.undecodable += 1
                    continue
                try:
                    msg = codec.decode(data)
                except codec.DecodeError:
                    self.undecodable += 1
                    continue
                if isinstance(msg, want) and (where is None or where(msg)):
                    out.append((entry_id, msg))
                    if len(out) >= limit:
                        break
            scanned += len(reply)
            if len(reply) < page:
                break
            top = "(" + _s(reply[-1][0])
        return out

    async def latest(
        self,
        symbol: str,
        kind: str,
        want: type[M] | tuple[type[M], ...],
        *,
        where: Callable[[M], bool] | None = None,
        max_scan: int = MAX_SCAN,
    ) -> tuple[str, M] | None:
        found = await self.recent(symbol, kind, want, 1, where=where, max_scan=max_scan)
        return found[0] if found else None

    async def length(self, symbol: str, kind: str) -> int:
        return int(await self.redis.xlen(keys.stream(symbol, kind)))

    async def last_id(self, symbol: str, kind: str) -> str | None:
        reply: Any = await self.redis.xrevrange(keys.stream(symbol, kind), "+", "-", count=1)
        return _s(reply[0][0]) if reply else None
