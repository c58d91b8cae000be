"""Where frames go: recorded as they are, then parsed and published, bad ones dead-lettered.

Live polling, ``ofx record`` and tests all hand frames to an ``Outlet``; only its wiring differs.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Final

from redis.exceptions import RedisError

from of_feed_mt5.parser import Mt5Parser
from ofcommon import keys
from ofcommon.bus import DeadLetters, Producer
from ofcommon.recording import RecordingWriter
from ofcommon.venue import BadFrame

log = logging.getLogger(__name__)

VENUE: Final = "mt5"
CATEGORY: Final = "ticks"
_RECORD_FLUSH_NS: Final = 1_000_000_000


class Outlet:
    """Records each frame (when a writer is given) and publishes what the parser makes of it
    (when a producer is given). Nothing here raises on bad data: a frame the parser refuses
    goes whole to the instrument's dead-letter stream, a refused tick as a one-tick frame."""

    def __init__(
        self,
        *,
        parser: Mt5Parser | None = None,
        producer: Producer | None = None,
        dead_letters: DeadLetters | None = None,
        writer: RecordingWriter | None = None,
    ) -> None:
        if producer is not None and (parser is None or dead_letters is None):
            raise ValueError("publishing needs a parser and a dead-letter writer")
        self._parser = parser
        self._producer = producer
        self._dead = dead_letters
        self._writer = writer
        self._flushed_ns = 0
        self.counts: Counter[str] = Counter()

    @property
    def parser(self) -> Mt5Parser | None:
        return self._parser

    async def frame(self, recv_ns: int, instrument: str, kind: str, data: bytes) -> None:
        """One frame of ``instrument``; ``kind`` ("trades"/"book") names its dead-letter origin."""
        self.counts["frames"] += 1
        if self._writer is not None:
            self._writer.write(recv_ns, data)
            if recv_ns - self._flushed_ns >= _RECORD_FLUSH_NS:
                self._writer.flush()
                self._flushed_ns = recv_ns
        if self._producer is None or self._parser is None:
            return
        try:
            published = self._parser.parse(recv_ns, data)
        except BadFrame as err:
            await self._dead_letter(instrument, kind, recv_ns, f"malformed: {err}", data)
            published = []
        for p in published:
            self._producer.add(keys.stream(p.symbol, p.kind), p.msg)
        self.counts["messages"] += len(published)
        for rejected in self._parser.take_rejected():
            reason = f"malformed: {rejected.reason}"
            await self._dead_letter(rejected.instrument, kind, recv_ns, reason, rejected.frame)

    async def _dead_letter(
        self, instrument: str, kind: str, recv_ns: int, reason: str, data: bytes
    ) -> None:
        self.counts["dead_letters"] += 1
        if self._dead is None:
            return
        try:
            origin = keys.stream(instrument, kind)
        except ValueError:
            origin = VENUE  # not an instrument key: the global dead-letter stream
        try:
            await self._dead.send(origin, f"frame@{recv_ns}", reason, data)
        except (OSError, RedisError) as err:
            log.error("could not dead-letter a %s frame (%s): %s", instrument, reason, err)

    async def flush(self) -> None:
        """Write what was published since the last flush; on a Redis error the entries stay
        buffered for the next flush and the error propagates."""
        if self._producer is not None:
            await self._producer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
