"""The clock seam: the one place where wall and monotonic time enter the system.

Logic runs on event time carried by messages; only edges (feeds, throttles, leases) read a Clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, UTC nanoseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...


class LiveClock:
    """The real clock, for edges only."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to, for deterministic tests."""

    def __init__(self, start_ns: int = 0) -> None:
        self._ns = start_ns
        self._mono = 0.0

    def now_ns(self) -> int:
        return self._ns

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._ns += round(seconds * 1e9)
        self._mono += seconds

    def set_ns(self, ns: int) -> None:
        if ns < self._ns:
            raise ValueError("FakeClock cannot go backwards")
        self._mono += (ns - self._ns) / 1e9
        self._ns = ns
