"""Broker server time → UTC: MT5 stamps ticks with the broker's wall clock written as an epoch.

A clock is a fixed offset (configured or detected at startup) or a zone with DST; pure arithmetic.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MINUTE_MS: Final = 60_000
_BUCKET_MS: Final = 15 * _MINUTE_MS  # DST transitions fall on quarter hours in every zone
_EPOCH: Final = datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: server wall time
_MAX_OFFSET_MIN: Final = 14 * 60
_FIXED: Final = re.compile(r"^[+-]?\d{1,4}$")
_SHIFTED: Final = re.compile(r"^(?P<zone>.+?)(?P<sign>[+-])(?P<h>\d{1,2})(?::(?P<m>\d{2}))?$")


class ClockSpecError(ValueError):
    """A server clock setting that names no offset or zone."""


class ServerClock:
    """Converts between broker server time and UTC, in integer milliseconds.

    ``spec`` is canonical and goes into every frame, so a replay converts exactly as live did:
    ``+120`` (fixed minutes), ``EET`` / ``Europe/Athens`` (an IANA zone, DST included) or
    ``America/New_York+7`` (a zone's local time shifted by whole hours/minutes: the common
    "GMT+2/+3 with US DST" broker convention, whose switches fall on weekends).

    In the hour a zone repeats when DST ends, server times are read as the first (DST) pass.
    """

    __slots__ = ("_cache_from", "_cache_to", "_fixed_ms", "_shift_ms", "_zone", "spec")

    def __init__(
        self, spec: str, *, fixed_min: int = 0, zone: ZoneInfo | None = None, shift_min: int = 0
    ) -> None:
        self.spec = spec
        self._fixed_ms = fixed_min * _MINUTE_MS
        self._zone = zone
        self._shift_ms = shift_min * _MINUTE_MS
        self._cache_from: dict[int, int] = {}
        self._cache_to: dict[int, int] = {}

    @classmethod
    def fixed(cls, minutes: int) -> ServerClock:
        if abs(minutes) > _MAX_OFFSET_MIN:
            raise ClockSpecError(f"server offset {minutes} min is beyond ±14 h")
        return cls(f"{minutes:+d}", fixed_min=minutes)

    @classmethod
    def parse(cls, spec: str) -> ServerClock:
        text = spec.strip()
        if _FIXED.match(text):
            return cls.fixed(int(text))
        zone = _zone(text)
        if zone is not None:
            return cls(text, zone=zone)
        m = _SHIFTED.match(text)
        if m and (zone := _zone(m["zone"])) is not None:
            minutes = int(m["h"]) * 60 + int(m["m"] or 0)
            if minutes > _MAX_OFFSET_MIN:
                raise ClockSpecError(f"server clock {spec!r}: shift beyond 14 h")
            sign = -1 if m["sign"] == "-" else 1
            return cls(text, zone=zone, shift_min=sign * minutes)
        raise ClockSpecError(
            f"server clock {spec!r}: expected minutes (+120), an IANA zone (EET) or a zone with a"
            " shift (America/New_York+7)"
        )

    @property
    def is_fixed(self) -> bool:
        return self._zone is None

    def to_utc_ms(self, server_ms: int) -> int:
        if self._zone is None:
            return server_ms - self._fixed_ms
        local_ms = server_ms - self._shift_ms
        bucket = local_ms // _BUCKET_MS
        offset = self._cache_from.get(bucket)
        if offset is None:
            local = _EPOCH + timedelta(milliseconds=bucket * _BUCKET_MS)
            offset = _offset_ms(local.replace(tzinfo=self._zone).utcoffset())
            self._cache_from[bucket] = offset
        return local_ms - offset

    def to_server_ms(self, utc_ms: int) -> int:
        if self._zone is None:
            return utc_ms + self._fixed_ms
        bucket = utc_ms // _BUCKET_MS
        offset = self._cache_to.get(bucket)
        if offset is None:
            instant = datetime.fromtimestamp(bucket * _BUCKET_MS / 1000, UTC)
            offset = _offset_ms(instant.astimezone(self._zone).utcoffset())
            self._cache_to[bucket] = offset
        return utc_ms + offset + self._shift_ms

    def __repr__(self) -> str:
        return f"ServerClock({self.spec!r})"


def _zone(name: str) -> ZoneInfo | None:
    if not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _offset_ms(offset: timedelta | None) -> int:
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def detect_offset_minutes(
    server_ms: int, wall_utc_ms: int, *, max_stale_ms: int = 120_000
) -> int | None:
    """The server clock's offset from UTC, rounded to 15 minutes, from the latest tick's server
    time and the wall clock read at the same moment; None when the tick is too stale to tell
    (it lies further than ``max_stale_ms`` from a quarter-hour offset) or the offset is absurd."""
    diff = server_ms - wall_utc_ms
    minutes = round(diff / _BUCKET_MS) * 15
    if abs(minutes) > _MAX_OFFSET_MIN:
        return None
    if abs(diff - minutes * _MINUTE_MS) > max_stale_ms:
        return None
    return minutes
