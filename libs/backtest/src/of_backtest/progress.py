"""Progress of a backtest on stderr: a one-line bar (trades/s, event time reached, ETA) on a
terminal, a plain line every few seconds otherwise. The wall clock is read here only.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Final, TextIO

from of_backtest.source import Progress

_TTY_EVERY_S: Final = 0.2
_PLAIN_EVERY_S: Final = 5.0
_WIDTH: Final = 30


def _iso(ns: int) -> str:
    if ns <= 0:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


class Reporter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._every = _TTY_EVERY_S if self.tty else _PLAIN_EVERY_S
        self._start = time.monotonic()
        self._next = self._start + self._every

    def line(self, p: Progress) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        share = min(p.done / p.total, 1.0) if p.total else 0.0
        eta = f"{elapsed * (1 - share) / share:.0f} s" if share > 0 else "?"
        rate = p.trades / elapsed
        text = f"{rate:,.0f} trades/s, event time {_iso(p.event_ns)}, ETA {eta}"
        if not self.tty:
            return f"backtest: {100 * share:.0f} % {p.trades:,} trades, {text}"
        filled = int(share * _WIDTH)
        return f"\r[{'#' * filled}{'.' * (_WIDTH - filled)}] {100 * share:3.0f} % {text}\x1b[K"

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        self.stream.write(self.line(p) + ("" if self.tty else "\n"))
        self.stream.flush()

    def done(self, p: Progress) -> float:
        elapsed = time.monotonic() - self._start
        if self.tty:
            self.stream.write(self.line(p) + "\n")
        self.stream.write(
            f"backtest: {p.trades:,} trades in {elapsed:.1f} s"
            f" ({p.trades / max(elapsed, 1e-9):,.0f} trades/s)\n"
        )
        self.stream.flush()
        return elapsed
