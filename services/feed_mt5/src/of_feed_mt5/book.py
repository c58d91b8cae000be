"""DOM: ``market_book_get`` entries → bid and ask levels, best first; pure.

The package's own order (sells then buys, price descending) is not relied upon: we sort.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from of_feed_mt5.constants import (
    BOOK_TYPE_BUY,
    BOOK_TYPE_BUY_MARKET,
    BOOK_TYPE_SELL,
    BOOK_TYPE_SELL_MARKET,
)
from ofcommon.messages import Level

_ASK_TYPES = frozenset((BOOK_TYPE_SELL, BOOK_TYPE_SELL_MARKET))
_BID_TYPES = frozenset((BOOK_TYPE_BUY, BOOK_TYPE_BUY_MARKET))


def book_sides(
    entries: Iterable[Sequence[float]], snap: Callable[[float], float] = float
) -> tuple[list[Level], list[Level]]:
    """(bids, asks) from ``(type, price, volume, volume_dbl)`` entries.

    Sizes are ``volume_dbl`` (``volume`` is a rounded int) unless it is missing or zero. Entries
    on one price (after ``snap`` to the tick grid) are summed; empty levels are dropped. Raises
    ValueError on a non-finite or negative price or size.
    """
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for entry in entries:
        kind, price, volume = int(entry[0]), float(entry[1]), float(entry[2])
        size = float(entry[3]) if len(entry) > 3 and entry[3] else volume
        if not (math.isfinite(price) and price > 0 and math.isfinite(size) and size >= 0):
            raise ValueError(f"bad DOM entry {tuple(entry)!r}")
        if kind in _ASK_TYPES:
            side = asks
        elif kind in _BID_TYPES:
            side = bids
        else:
            continue  # an entry type newer than the documented four
        if size > 0:
            key = snap(price)
            side[key] = side.get(key, 0.0) + size
    return sorted(bids.items(), reverse=True), sorted(asks.items())
