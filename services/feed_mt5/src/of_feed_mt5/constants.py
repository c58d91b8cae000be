"""The MetaTrader5 package's documented constants and array layouts (feeds.md §C.2–C.4).

Frames and the parser rely on these values; a client whose module disagrees is refused at connect.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# copy_ticks_* flags
COPY_TICKS_ALL: Final = -1
COPY_TICKS_INFO: Final = 1
COPY_TICKS_TRADE: Final = 2

# tick flags (bit mask); other bits (0x80 is seen in the wild) carry no meaning for us
TICK_FLAG_BID: Final = 0x02
TICK_FLAG_ASK: Final = 0x04
TICK_FLAG_LAST: Final = 0x08
TICK_FLAG_VOLUME: Final = 0x10
TICK_FLAG_BUY: Final = 0x20
TICK_FLAG_SELL: Final = 0x40

# market_book_get entry types
BOOK_TYPE_SELL: Final = 1
BOOK_TYPE_BUY: Final = 2
BOOK_TYPE_SELL_MARKET: Final = 3
BOOK_TYPE_BUY_MARKET: Final = 4

TIMEFRAME_M1: Final = 1

# last_error() codes that mean the terminal link itself is gone (reconnect, don't just retry)
RES_E_INTERNAL_FAIL_SEND: Final = -10001
RES_E_INTERNAL_FAIL_TIMEOUT: Final = -10005
IPC_ERRORS: Final = range(RES_E_INTERNAL_FAIL_TIMEOUT, RES_E_INTERNAL_FAIL_SEND + 1)

TICK_FIELDS: Final = (
    "time",
    "bid",
    "ask",
    "last",
    "volume",
    "time_msc",
    "flags",
    "volume_real",
)
TICK_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)

RATE_FIELDS: Final = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "tick_volume",
    "spread",
    "real_volume",
)
RATE_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)

# Every constant a client must agree on, by the MetaTrader5 attribute name.
EXPECTED: Final[dict[str, int]] = {
    "COPY_TICKS_ALL": COPY_TICKS_ALL,
    "TICK_FLAG_BID": TICK_FLAG_BID,
    "TICK_FLAG_ASK": TICK_FLAG_ASK,
    "TICK_FLAG_LAST": TICK_FLAG_LAST,
    "TICK_FLAG_VOLUME": TICK_FLAG_VOLUME,
    "TICK_FLAG_BUY": TICK_FLAG_BUY,
    "TICK_FLAG_SELL": TICK_FLAG_SELL,
    "BOOK_TYPE_SELL": BOOK_TYPE_SELL,
    "BOOK_TYPE_BUY": BOOK_TYPE_BUY,
    "BOOK_TYPE_SELL_MARKET": BOOK_TYPE_SELL_MARKET,
    "BOOK_TYPE_BUY_MARKET": BOOK_TYPE_BUY_MARKET,
    "TIMEFRAME_M1": TIMEFRAME_M1,
}
