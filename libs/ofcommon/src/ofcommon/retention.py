"""How long each kind of stream is kept: approximate MAXLEN on every XADD plus a MINID age trim.

Each kind is sized from its design rate (entries per second on a busy instrument) and the age it
must cover, so the length cap and the age limit agree: at the design rate both cut at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import msgspec

HOUR: Final = 3600
DAY: Final = 24 * HOUR


class StreamRetention(msgspec.Struct, frozen=True):
    maxlen: int
    max_age_s: int
    rate_per_s: float = 0.0  # the design rate it was sized from; 0 = not sized from a rate

    def holds_s(self) -> float:
        """How long ``maxlen`` entries last at the design rate (inf without one)."""
        return self.maxlen / self.rate_per_s if self.rate_per_s else math.inf


def sized(rate_per_s: float, max_age_s: int) -> StreamRetention:
    """The retention that keeps ``max_age_s`` of entries arriving at ``rate_per_s``."""
    return StreamRetention(math.ceil(rate_per_s * max_age_s), max_age_s, rate_per_s)


# Rates measured on the real BTCUSDT spot capture (tests/support/real_data.py, 346 s) through the
# Bybit parser and the analytics fold: trades 28/s, book 10/s (Binance 100 ms diffs; Bybit's
# orderbook.50 pushes every 20 ms: 50/s), bars 2.3/s (partials of every timeframe; ~4/s on a busy
# perp), profile 1/s, bookstats 3.3/s, consumption 8.5/s. Market data and analytics keep a day
# (the longest consumer outage planned for; closed bars and profiles are in PostgreSQL anyway),
# book-derived streams the 6 h the book itself is kept; the sparse downstream streams keep weeks.
DEFAULTS: Final[Mapping[str, StreamRetention]] = {
    "trades": sized(30, DAY),
    "book": sized(50, 6 * HOUR),
    "bars": sized(4, DAY),
    "profile": sized(1, DAY),
    "bookstats": sized(5, 6 * HOUR),
    "consumption": sized(25, 6 * HOUR),
    "patterns": sized(0.04, 30 * DAY),
    "signals": sized(0.04, 30 * DAY),
    "tradeevents": sized(0.013, 90 * DAY),
    "dlq": sized(0.08, 14 * DAY),
}
FALLBACK: Final = sized(1, DAY)


def for_kind(kind: str) -> StreamRetention:
    return DEFAULTS.get(kind, FALLBACK)
