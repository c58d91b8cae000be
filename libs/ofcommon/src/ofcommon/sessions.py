"""Trading sessions in their exchange time zones, DST-correct through zoneinfo.
Pure functions from an event time (int ns since the Unix epoch, UTC) to its session; no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "ALL_DAYS",
    "SESSIONS",
    "WEEKDAYS",
    "SessionName",
    "SessionSpec",
    "bounds_for_date",
    "get_session",
    "in_session",
    "session_bounds",
    "session_date",
    "session_id",
]

SessionName = Literal["NY_CASH", "LONDON", "ASIAN", "FULL_DAY"]

#: ``date.weekday()`` numbers: Monday = 0 ... Sunday = 6.
WEEKDAYS: Final[tuple[int, ...]] = (0, 1, 2, 3, 4)
ALL_DAYS: Final[tuple[int, ...]] = (0, 1, 2, 3, 4, 5, 6)

_HHMM: Final = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")
_MINUTES_PER_DAY: Final = 24 * 60
_NS_PER_S: Final = 1_000_000_000
_NS_PER_US: Final = 1_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_ONE_DAY: Final = timedelta(days=1)
_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class SessionSpec(msgspec.Struct, frozen=True):
    """A daily session: ``open``-``close`` wall-clock hours in the IANA zone ``tz``.

    ``open`` < ``close`` on the same local day; ``close`` may be ``"24:00"`` (the next local
    midnight). ``days`` lists the local weekdays that have a session (Monday = 0).
    """

    name: str
    tz: str
    open: str
    close: str
    days: tuple[int, ...] = ALL_DAYS

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"session {self.name}: unknown time zone {self.tz!r}") from e
        opens = _minutes(self.name, "open", self.open)
        closes = _minutes(self.name, "close", self.close)
        if opens >= min(closes, _MINUTES_PER_DAY):
            raise ValueError(
                f"session {self.name}: open {self.open} must be before close {self.close}"
                " on the same day"
            )
        if not self.days or any(d not in ALL_DAYS for d in self.days):
            raise ValueError(f"session {self.name}: days must be weekday numbers 0-6, not empty")
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"session {self.name}: days {self.days} repeat a weekday")


def _minutes(name: str, which: str, hhmm: str) -> int:
    m = _HHMM.match(hhmm)
    if m is None:
        raise ValueError(f"session {name}: {which} must be 'HH:MM' (00:00-24:00), got {hhmm!r}")
    hours, minutes = (m[1], m[2]) if m[1] is not None else (m[3], m[4])
    return int(hours) * 60 + int(minutes)


# The seed names these sessions (ny_cash, london, asian, full_day) but its spec gives no hours;
# the hours are those of the seed's own SessionType comments:
# * NY_CASH: US cash equities, 09:30-16:00 New York time.
# * LONDON: LSE cash, 08:00-16:30. The seed writes "GMT", which is only right in winter; London
#   local time is what the exchange keeps, so the zone is used, not a fixed offset.
# * ASIAN: the seed's "00:00-09:00 GMT" = 09:00-18:00 Tokyo time all year (Japan has no DST). It
#   spans the Tokyo cash session (09:00-15:30) and Hong Kong's (10:30-17:00 Tokyo time); in the
#   Australian summer the ASX opens at 08:00 Tokyo time, so its first hour falls before it.
# * FULL_DAY: the UTC calendar day, every day (crypto trades at weekends).
# Weekend days have no cash session, so a Friday-evening print belongs to Monday's session rather
# than to a Saturday one that never trades. Exchange holidays are not modelled.
SESSIONS: Final[Mapping[str, SessionSpec]] = MappingProxyType(
    {
        "NY_CASH": SessionSpec("NY_CASH", "America/New_York", "09:30", "16:00", WEEKDAYS),
        "LONDON": SessionSpec("LONDON", "Europe/London", "08:00", "16:30", WEEKDAYS),
        "ASIAN": SessionSpec("ASIAN", "Asia/Tokyo", "09:00", "18:00", WEEKDAYS),
        "FULL_DAY": SessionSpec("FULL_DAY", "UTC", "00:00", "24:00", ALL_DAYS),
    }
)


def get_session(name: str) -> SessionSpec:
    """The built-in session called ``name``; the seed's lower-case spelling is accepted too."""
    spec = SESSIONS.get(name.upper())
    if spec is None:
        raise KeyError(f"unknown session {name!r} (sessions: {', '.join(SESSIONS)})")
    return spec


@lru_cache(maxsize=64)
def _compiled(spec: SessionSpec) -> tuple[ZoneInfo, int, int, frozenset[int]]:
    return (
        ZoneInfo(spec.tz),
        _minutes(spec.name, "open", spec.open),
        _minutes(spec.name, "close", spec.close),
        frozenset(spec.days),
    )


def _local_ns(day: date, minutes: int, tz: ZoneInfo) -> int:
    # A wall time skipped or repeated by a DST change resolves with fold=0 (PEP 495): the offset
    # in force before the change. No built-in session opens or closes inside such an hour.
    d = day + timedelta(days=minutes // _MINUTES_PER_DAY)
    m = minutes % _MINUTES_PER_DAY
    local = datetime(d.year, d.month, d.day, m // 60, m % 60, tzinfo=tz)
    return (local - _EPOCH) // _ONE_US * _NS_PER_US


@lru_cache(maxsize=4096)
def _bounds(spec: SessionSpec, day: date) -> tuple[int, int]:
    tz, opens, closes, _ = _compiled(spec)
    return _local_ns(day, opens, tz), _local_ns(day, closes, tz)


def bounds_for_date(spec: SessionSpec, day: date) -> tuple[int, int]:
    """[start_ns, end_ns) of the session on exchange-local date ``day``.

    Raises ValueError if ``day`` is a weekday without a session.
    """
    if day.weekday() not in _compiled(spec)[3]:
        raise ValueError(
            f"session {spec.name} has no session on {_DAY_NAMES[day.weekday()]} {day.isoformat()}"
        )
    return _bounds(spec, day)


def session_date(spec: SessionSpec, ts_ns: int) -> date:
    """Exchange-local date of the session ``ts_ns`` belongs to.

    The rule: the first session in time order that has not ended at ``ts_ns``, i.e. the session
    containing it or, outside trading hours, the next one to open. Every instant therefore has
    exactly one session, and the sessions' [start, end) windows plus the gaps before them tile the
    time line: (previous close, close] maps to one session.
    """
    tz, _, _, days = _compiled(spec)
    # No session ends after the local midnight that follows its open, so the sessions of earlier
    # local dates have all ended by ts_ns: the search starts at ts_ns's own local date.
    day = datetime.fromtimestamp(ts_ns // _NS_PER_S, tz).date()
    for _ in range(8):
        if day.weekday() in days and ts_ns < _bounds(spec, day)[1]:
            return day
        day += _ONE_DAY
    raise AssertionError(f"session {spec.name}: no session within a week of {ts_ns}")


def session_bounds(spec: SessionSpec, ts_ns: int) -> tuple[int, int]:
    """[start_ns, end_ns) of the session ``ts_ns`` belongs to (containing, else next)."""
    return _bounds(spec, session_date(spec, ts_ns))


def session_id(spec: SessionSpec, ts_ns: int) -> str:
    """The session's exchange-local date as ``YYYY-MM-DD``."""
    return session_date(spec, ts_ns).isoformat()


def in_session(spec: SessionSpec, ts_ns: int) -> bool:
    """Whether ``ts_ns`` falls inside trading hours, [open, close)."""
    start, end = session_bounds(spec, ts_ns)
    return start <= ts_ns < end
