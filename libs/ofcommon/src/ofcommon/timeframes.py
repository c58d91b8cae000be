"""Bar timeframes and their buckets: epoch-aligned, or aligned to the trading day for 4h and 1D.

One place for the rule analytics composes bars by and the API composes stored 1m bars by on read.
"""

from __future__ import annotations

from typing import Final

from ofcommon.tradingday import TradingDay, day_bounds

__all__ = ["COMPOSED", "DAY_ALIGNED", "TIMEFRAMES", "bucket"]

_NS: Final = 1_000_000_000
TIMEFRAMES: Final[dict[str, int]] = {
    "1m": 60 * _NS,
    "5m": 300 * _NS,
    "15m": 900 * _NS,
    "1h": 3600 * _NS,
    "4h": 4 * 3600 * _NS,
    "1D": 86400 * _NS,
}
COMPOSED: Final[tuple[str, ...]] = ("5m", "15m", "1h", "4h", "1D")
# Aligned to the instrument's trading day rather than to the epoch.
DAY_ALIGNED: Final[frozenset[str]] = frozenset({"4h", "1D"})


def bucket(timeframe: str, ts: int, day: TradingDay | None) -> tuple[int, int]:
    """[open_ts, close_ts) of the ``timeframe`` bar containing ``ts``; ``day`` aligns 4h and 1D
    to the trading day (None: epoch-aligned)."""
    period = TIMEFRAMES[timeframe]
    if day is None or timeframe not in DAY_ALIGNED:
        start = ts - ts % period
        return start, start + period
    day_start, day_end = day_bounds(day, ts)
    if timeframe == "1D":  # the whole trading day: 23 or 25 hours across a DST change
        return day_start, day_end
    start = day_start + (ts - day_start) // period * period
    return start, min(start + period, day_end)
