"""Trading days: the local wall time at which an instrument's daily bar rolls over, DST-correct.
Pure functions from an event time (int ns since the Unix epoch, UTC) to its trading day's bounds.

FX and the CME-traded markets (index futures, metals, energy) roll at 17:00 New York, the close
of the Globex day and the FX value-date roll that MT5 brokers' server time is set to; the trading
day that opens Sunday 17:00 is Monday's. Crypto uses the UTC day; cash markets their exchange's
local midnight. A trading day lasts 24 hours of local time (23 or 25 on a DST change).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec

__all__ = ["TRADING_DAYS", "TradingDay", "TradingDayName", "day_bounds"]

TradingDayName = Literal["UTC", "NY_1700", "NY", "LONDON", "TOKYO"]

_NS_PER_S: Final = 1_000_000_000
_NS_PER_US: Final = 1_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_ONE_DAY: Final = timedelta(days=1)


class TradingDay(msgspec.Struct, frozen=True):
    """A trading day starting every day at ``hour``:``minute`` local time in the zone ``tz``."""

    name: str
    tz: str
    hour: int = 0
    minute: int = 0


TRADING_DAYS: Final[Mapping[str, TradingDay]] = MappingProxyType(
    {
        "UTC": TradingDay("UTC", "UTC"),
        "NY_1700": TradingDay("NY_1700", "America/New_York", 17),
        "NY": TradingDay("NY", "America/New_York"),
        "LONDON": TradingDay("LONDON", "Europe/London"),
        "TOKYO": TradingDay("TOKYO", "Asia/Tokyo"),
    }
)


@lru_cache(maxsize=4096)
def _roll_ns(day: TradingDay, d: date) -> int:
    # A roll time skipped or repeated by a DST change resolves with fold=0 (PEP 495); no built-in
    # trading day rolls inside such an hour.
    local = datetime(d.year, d.month, d.day, day.hour, day.minute, tzinfo=ZoneInfo(day.tz))
    return (local - _EPOCH) // _ONE_US * _NS_PER_US


def day_bounds(day: TradingDay, ts_ns: int) -> tuple[int, int]:
    """[start_ns, end_ns) of the trading day containing ``ts_ns``."""
    d = datetime.fromtimestamp(ts_ns // _NS_PER_S, ZoneInfo(day.tz)).date()
    start = _roll_ns(day, d)
    if ts_ns < start:
        d -= _ONE_DAY
        start = _roll_ns(day, d)
    end = _roll_ns(day, d + _ONE_DAY)
    if ts_ns >= end:  # only across a DST change between the local date and the roll
        d += _ONE_DAY
        start, end = end, _roll_ns(day, d + _ONE_DAY)
    return start, end
