"""Venue time of one connection, as the heartbeats extrapolate it through quiet spells.
The trades streams' clock advances only from trades: book frames run ahead of in-flight trades.
"""

from __future__ import annotations

__all__ = ["VenueClock"]


class VenueClock:
    """The newest exchange timestamp published on a connection, with our receive time of it:
    of its trades (``kind="trades"``) and of any message (``kind="book"``).

    ``now(kind, wall_ns)`` is that timestamp advanced by the wall time elapsed since it arrived, or
    None before anything of the kind arrived. A book frame is stamped when it is published, up to
    ~170 ms after the trades it shows (measured on the real Binance capture, docs/analytics.md), so
    a trades heartbeat taken from it could close a bar ahead of a trade still in flight. The book
    streams keep the newest time of any topic: an instrument without a book (or before its first
    snapshot) still gets a moving book clock, and trades are never stamped after the book frames
    that follow them.
    """

    def __init__(self) -> None:
        self._newest: dict[str, tuple[int, int]] = {}

    def observe(self, kind: str, ts_event: int, recv_ns: int) -> None:
        """A published message of stream kind ``kind`` ("trades" or "book")."""
        for key in ("trades", "book") if kind == "trades" else ("book",):
            newest = self._newest.get(key)
            if newest is None or ts_event >= newest[0]:
                self._newest[key] = (ts_event, recv_ns)

    def now(self, kind: str, wall_ns: int) -> int | None:
        newest = self._newest.get(kind)
        if newest is None:
            return None
        ts, recv = newest
        return ts + max(0, wall_ns - recv)
