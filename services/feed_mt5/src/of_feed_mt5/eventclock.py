"""Event time between broker events: the latest broker time carried forward by elapsed wall time.

Heartbeats and DOM snapshots (which carry no time of their own) are stamped with it; pure.
"""

from __future__ import annotations


class EventClock:
    """Per instrument. ``slack_ns`` holds the estimate back by the polling delay, so a tick that
    is still on its way (up to a poll interval plus the bridge's latency) is rarely stamped
    before a heartbeat already sent; the estimate never goes backwards."""

    __slots__ = ("_event_ns", "_issued_ns", "_slack_ns", "_wall_ns")

    def __init__(self, slack_ns: int = 1_000_000_000) -> None:
        self._slack_ns = slack_ns
        self._event_ns: int | None = None
        self._wall_ns = 0
        self._issued_ns = 0

    @property
    def latest_event_ns(self) -> int | None:
        return self._event_ns

    def observe(self, event_ns: int, wall_ns: int) -> None:
        """A broker event (UTC ns) received at ``wall_ns``."""
        if self._event_ns is None or event_ns >= self._event_ns:
            self._event_ns = event_ns
            self._wall_ns = wall_ns

    def now(self, wall_ns: int) -> int | None:
        """The event-time estimate at ``wall_ns``; None before any broker event."""
        if self._event_ns is None:
            return None
        carried = max(0, wall_ns - self._wall_ns - self._slack_ns)
        self._issued_ns = max(self._issued_ns, self._event_ns + carried)
        return self._issued_ns
