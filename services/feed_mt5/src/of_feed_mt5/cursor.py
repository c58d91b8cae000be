"""The tick cursor: polling ``copy_ticks_from`` without losing or repeating same-millisecond ticks.

Pure: it turns each poll's result into the ticks not seen before; the caller does the I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final, TypeAlias

# One tick as a tuple in the documented field order:
# (time, bid, ask, last, volume, time_msc, flags, volume_real)
TickRow: TypeAlias = tuple[int, float, float, float, int, int, int, float]
MSC: Final = 5  # index of time_msc in a TickRow

MAX_COUNT: Final = 1_000_000


def _key(row: Sequence[object]) -> tuple[object, ...]:
    # NaN != NaN would make a tick with a NaN field look new on every poll
    return tuple("nan" if isinstance(x, float) and x != x else x for x in row)


class TickCursor:
    """Where the next poll starts, and which ticks of that millisecond were already delivered.

    ``copy_ticks_from`` may honour only whole seconds of ``date_from``, and several ticks often
    share one ``time_msc``, some of which may not have existed at the previous poll. So each poll
    asks again from the cursor's second, drops what is older than the cursor's millisecond and
    skips the already-seen ticks *of* that millisecond by whole-record comparison (by count
    alone for ticks known only by number, after a resume).

    A result that fills ``count`` may hide more ticks: ``more`` says poll again at once, and a
    full result without progress (more same-second ticks than ``count``) doubles ``count``.
    """

    __slots__ = ("_base", "_count", "_more", "_msc", "_seen", "_unknown")

    def __init__(
        self,
        start_msc: int,
        *,
        count: int = 1000,
        seen: Sequence[TickRow] = (),
        seen_count: int = 0,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._msc = start_msc
        self._base = count
        self._count = count
        self._seen: list[TickRow] = list(seen)
        self._unknown = seen_count  # seen ticks at the cursor known only by number, come first
        self._more = False

    @property
    def msc(self) -> int:
        """The cursor: time_msc of the last delivered tick (server clock, ms)."""
        return self._msc

    @property
    def seen_at_cursor(self) -> int:
        return self._unknown + len(self._seen)

    @property
    def request_from_s(self) -> int:
        """``date_from`` of the next request, whole seconds (server clock)."""
        return self._msc // 1000

    @property
    def count(self) -> int:
        """``count`` of the next request."""
        return self._count

    @property
    def more(self) -> bool:
        """The last result was full: more ticks may be waiting, poll again without sleeping."""
        return self._more

    def retune(self, count: int) -> None:
        """A new base ``count`` (history catch-up asks for much more than live polling)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._base = self._count = count

    def advance(self, rows: Sequence[TickRow]) -> list[TickRow]:
        """The ticks of ``rows`` (one poll's result, in terminal order) not delivered before."""
        at_cursor = [r for r in rows if r[MSC] == self._msc]
        newer = [r for r in rows if r[MSC] > self._msc]
        fresh = self._unseen(at_cursor)
        full = len(rows) >= self._count
        if newer:
            last = max(r[MSC] for r in newer)
            self._msc = last
            self._seen = [r for r in rows if r[MSC] == last]
            self._unknown = 0
        elif len(at_cursor) >= self.seen_at_cursor:
            self._seen = at_cursor
            self._unknown = 0
        self._adapt(full=full, progressed=bool(fresh or newer), size=len(rows))
        return fresh + newer

    def _unseen(self, at_cursor: list[TickRow]) -> list[TickRow]:
        rest = at_cursor[self._unknown :]
        if [_key(r) for r in rest[: len(self._seen)]] == [_key(r) for r in self._seen]:
            return rest[len(self._seen) :]
        # The terminal rewrote this millisecond (rare): deliver only records not seen before.
        remaining = Counter(_key(r) for r in self._seen)
        fresh = []
        for r in rest:
            k = _key(r)
            if remaining[k] > 0:
                remaining[k] -= 1
            else:
                fresh.append(r)
        return fresh

    def _adapt(self, *, full: bool, progressed: bool, size: int) -> None:
        self._more = full
        if full and not progressed:
            self._count = min(self._count * 2, MAX_COUNT)
        elif not full and self._count > self._base and size < self._count // 4:
            self._count = max(self._base, self._count // 2)
