"""One source per instrument at run time: the feed that publishes an instrument holds its claim.

A claim is a Redis key (keys.source_claim) with a TTL, renewed while the feed runs. A feed of
another venue finds it held and refuses the instrument with a log line and a metric, so two
misconfigured feeds never interleave two venues in one stream. Workers of the same venue take
a claim over at once (a restarted feed must not wait out its predecessor's TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Final

from redis.exceptions import RedisError

from ofcommon import keys, metrics
from ofcommon.bus import FlushResult, Producer, Redis
from ofcommon.messages import Message

__all__ = ["CLAIM_TTL_S", "ClaimedProducer", "SourceClaims"]

log = logging.getLogger(__name__)

CLAIM_TTL_S: Final = 10.0
"""How long a claim outlives a feed that stopped renewing it (crash, Redis away)."""

# Take the claim when it is free or held by this venue; else leave it. Returns {taken, holder}.
_CLAIM: Final = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] and string.sub(held, 1, #ARGV[2] + 1) ~= ARGV[2] .. '/' then
  return {0, held}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, held or ''}
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SourceClaims:
    """The claims of one feed process: acquire at start, renew in `run`, release at stop."""

    def __init__(
        self,
        redis: Redis,
        *,
        venue: str,
        worker_id: str,
        service: str,
        ttl_s: float = CLAIM_TTL_S,
    ) -> None:
        if "/" in venue:
            raise ValueError(f"venue {venue!r}: no '/' (it separates venue and worker)")
        self._redis: Any = redis  # redis-py types eval() replies as a union of every shape
        self.venue = venue
        self._service = service
        self._mine = f"{venue}/{worker_id}"
        self._ttl_ms = int(ttl_s * 1000)
        self._held: set[str] = set()
        self.refused: dict[str, str] = {}  # symbol -> holder, for the health report

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def holds(self, symbol: str) -> bool:
        return symbol in self._held

    async def acquire(self, symbols: Iterable[str]) -> dict[str, str]:
        """Claim `symbols`; the refused ones with the claim's holder (``venue/worker``)."""
        refused: dict[str, str] = {}
        for symbol, (taken, holder) in await self._claim(list(symbols)):
            if taken:
                self._held.add(symbol)
                if holder and holder != self._mine:
                    log.info("source of %s taken over from %s", symbol, holder)
            else:
                refused[symbol] = holder
                self._refuse(symbol, holder, "at start")
        return refused

    async def renew(self) -> None:
        """Extend every held claim; one another venue took meanwhile is dropped and reported."""
        for symbol, (taken, holder) in await self._claim(sorted(self._held)):
            if not taken:
                self._held.discard(symbol)
                self._refuse(symbol, holder, "lost its claim")

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every third of the TTL until `stop`; Redis errors wait for the next round."""
        interval = self._ttl_ms / 3000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self.renew()
            except (OSError, RedisError) as err:
                log.warning("source claims not renewed (%s); retrying in %.1f s", err, interval)

    async def release(self) -> None:
        """Give every claim back (only those still ours), so another venue may start at once."""
        symbols = sorted(self._held)
        self._held.clear()
        if not symbols:
            return
        pipe = self._redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.eval(_RELEASE, 1, keys.source_claim(symbol), self._mine)
        await pipe.execute()

    async def _claim(self, symbols: list[str]) -> list[tuple[str, tuple[bool, str]]]:
        if not symbols:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.eval(_CLAIM, 1, keys.source_claim(symbol), self._mine, self.venue, self._ttl_ms)
        replies = await pipe.execute()
        out = []
        for symbol, (taken, holder) in zip(symbols, replies, strict=True):
            text = holder.decode() if isinstance(holder, bytes) else str(holder)
            out.append((symbol, (bool(taken), text)))
        return out

    def _refuse(self, symbol: str, holder: str, when: str) -> None:
        self.refused[symbol] = holder
        venue = holder.split("/", 1)[0]
        metrics.SOURCE_REFUSED.labels(self._service, symbol, venue).inc()
        log.error(
            "refusing to publish %s (%s): its source is claimed by %s; one venue per"
            " instrument (the registry's `source`, see docs/configuration.md)",
            symbol,
            when,
            holder,
        )


class ClaimedProducer(Producer):
    """A Producer that writes an instrument's streams only while `claims` holds it: the one
    gate every feed write passes, so a lost claim stops the feed's output at once."""

    def __init__(self, redis: Redis, claims: SourceClaims, *, service: str) -> None:
        super().__init__(redis, service=service)
        self._claims = claims
        self._symbols: dict[str, str | None] = {}  # stream -> symbol (None: not per instrument)
        self.withheld = 0

    def _allowed(self, stream: str) -> bool:
        if stream not in self._symbols:
            try:
                self._symbols[stream] = keys.parse_stream(stream)[0]
            except ValueError:
                self._symbols[stream] = None
        symbol = self._symbols[stream]
        if symbol is None or self._claims.holds(symbol):
            return True
        self.withheld += 1
        return False

    def add(self, stream: str, msg: Message, entry_id: str = "*") -> None:
        if self._allowed(stream):
            super().add(stream, msg, entry_id)

    def add_encoded(self, stream: str, data: bytes, entry_id: str = "*") -> None:
        if self._allowed(stream):
            super().add_encoded(stream, data, entry_id)

    async def publish(self, stream: str, msg: Message, entry_id: str = "*") -> FlushResult:
        if not self._allowed(stream):
            return FlushResult(0, 0)
        return await super().publish(stream, msg, entry_id)
