"""One WebSocket client's outbox: critical messages queued in order (bounded), high-rate ones
conflated per key at their interval (latest wins), sequence numbers per (channel, symbol).

Pure bookkeeping, no I/O: the connection's sender drains it; a full queue marks it overflowed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # (channel, symbol, sub-key such as a timeframe or scope)


@dataclass
class Outgoing:
    channel: str
    symbol: str
    data: Any
    entry_id: str = ""
    snapshot: bool = False
    kind: str = ""  # the stream kind it came from ("" for snapshots and stats)
    raw: bytes = b""  # ``data`` already JSON-encoded (once for every client), or empty


@dataclass
class Outbox:
    limit: int
    intervals: dict[str, float]  # channel -> seconds between conflated sends
    critical: deque[Outgoing] = field(default_factory=deque)
    pending: dict[Key, Outgoing] = field(default_factory=dict)
    due: dict[Key, float] = field(default_factory=dict)
    seq: dict[tuple[str, str], int] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)  # conflated away, per channel
    overflow: str = ""

    def put_critical(self, msg: Outgoing, key: Key | None = None) -> bool:
        """Queue ``msg`` (it supersedes a pending conflated ``key``); False once overflowed."""
        if self.overflow:
            return False
        if len(self.critical) >= self.limit:
            # a close reason holds at most 123 bytes
            self.overflow = f"slow consumer: {len(self.critical)} critical messages queued"
            return False
        if key is not None and self.pending.pop(key, None) is not None:
            self.superseded[key[0]] = self.superseded.get(key[0], 0) + 1
        self.critical.append(msg)
        return True

    def put_latest(self, key: Key, msg: Outgoing) -> None:
        """Keep ``msg`` as the latest of ``key``; an unsent older one is superseded."""
        if self.overflow:
            return
        if key in self.pending:
            self.superseded[key[0]] = self.superseded.get(key[0], 0) + 1
        self.pending[key] = msg

    def take(self, now: float) -> tuple[list[Outgoing], float | None]:
        """What may be sent at ``now`` (critical first, in order; then due conflated ones) and
        the time the next pending one becomes due (None: nothing pending)."""
        out = list(self.critical)
        self.critical.clear()
        later: float | None = None
        for key in list(self.pending):
            at = self.due.get(key, 0.0)
            if at <= now:
                out.append(self.pending.pop(key))
                self.due[key] = now + self.intervals.get(key[0], 0.0)
            elif later is None or at < later:
                later = at
        return out, later

    def number(self, msg: Outgoing) -> int:
        """The next sequence number of ``msg``'s (channel, symbol); a snapshot restarts at 0."""
        k = (msg.channel, msg.symbol)
        n = 0 if msg.snapshot else self.seq.get(k, -1) + 1
        self.seq[k] = n
        return n

    def forget(self, channel: str, symbol: str) -> None:
        for key in [k for k in self.pending if k[0] == channel and k[1] == symbol]:
            del self.pending[key]
        self.seq.pop((channel, symbol), None)
