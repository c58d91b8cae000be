"""The client seam: the MetaTrader5 functions the feed uses, as one Protocol, and their value types.

``NativeClient`` (the Windows package) and ``BridgeClient`` (an RPyC classic bridge) implement it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from of_feed_mt5 import constants as c

TickArray = npt.NDArray[np.void]  # structured, dtype constants.TICK_DTYPE
RateArray = npt.NDArray[np.void]  # structured, dtype constants.RATE_DTYPE


class Mt5Error(RuntimeError):
    """A MetaTrader5 call failed; ``code`` is the ``last_error()`` code when there is one."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Mt5ConnectionError(Mt5Error):
    """The link to the terminal (IPC or bridge) is gone: reconnect rather than retry."""


class Mt5Unavailable(Mt5Error):
    """This client cannot work here at all (configuration, platform); retrying will not help."""


class BookLevel(NamedTuple):
    """One ``market_book_get`` entry (the package's ``BookInfo``)."""

    type: int
    price: float
    volume: int
    volume_dbl: float


SYMBOL_FIELDS = (
    "name",
    "visible",
    "select",
    "digits",
    "point",
    "trade_tick_size",
    "ticks_bookdepth",
    "time",
    "bid",
    "ask",
    "last",
    "description",
    "path",
)


@dataclass(frozen=True, slots=True)
class SymbolDetails:
    """The ``symbol_info`` fields the feed reads (feeds.md §C.5)."""

    name: str
    visible: bool = False
    select: bool = False
    digits: int = 0
    point: float = 0.0
    trade_tick_size: float = 0.0
    ticks_bookdepth: int = 0
    time: int = 0  # last quote, broker server time as epoch seconds
    bid: float = 0.0
    ask: float = 0.0
    last: float = 0.0
    description: str = ""
    path: str = ""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SymbolDetails:
        values = {k: raw[k] for k in SYMBOL_FIELDS if raw.get(k) is not None}
        if not isinstance(values.get("name"), str):
            raise Mt5Error(f"symbol info without a name: {dict(raw)!r}"[:300])
        return cls(**values)

    @classmethod
    def from_object(cls, obj: Any) -> SymbolDetails:
        return cls.from_mapping({k: getattr(obj, k, None) for k in SYMBOL_FIELDS})


class Mt5Client(Protocol):
    """Exactly the MetaTrader5 API the feed calls. Failures return None/False as in the package
    (details from ``last_error``); a lost link raises ``Mt5ConnectionError``.

    Datetimes are tz-aware UTC datetimes holding *broker server* wall time, as the package wants.
    """

    COPY_TICKS_ALL: int
    TIMEFRAME_M1: int
    TICK_FLAG_BID: int
    TICK_FLAG_ASK: int
    TICK_FLAG_LAST: int
    TICK_FLAG_VOLUME: int
    TICK_FLAG_BUY: int
    TICK_FLAG_SELL: int
    BOOK_TYPE_SELL: int
    BOOK_TYPE_BUY: int
    BOOK_TYPE_SELL_MARKET: int
    BOOK_TYPE_BUY_MARKET: int

    def initialize(self, path: str | None = None, *, timeout: int | None = None) -> bool: ...

    def login(
        self, login: int, *, password: str = "", server: str = "", timeout: int | None = None
    ) -> bool: ...

    def shutdown(self) -> None: ...

    def last_error(self) -> tuple[int, str]: ...

    def symbol_info(self, symbol: str) -> SymbolDetails | None: ...

    def symbol_select(self, symbol: str, enable: bool = True) -> bool: ...

    def symbols_get(self, group: str | None = None) -> list[SymbolDetails] | None: ...

    def copy_ticks_from(
        self, symbol: str, date_from: datetime, count: int, flags: int
    ) -> TickArray | None: ...

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime, date_to: datetime
    ) -> RateArray | None: ...

    def market_book_add(self, symbol: str) -> bool: ...

    def market_book_get(self, symbol: str) -> tuple[BookLevel, ...] | None: ...

    def market_book_release(self, symbol: str) -> bool: ...


class DocumentedConstants:
    """The constants as documented; clients overwrite them with what their module reports."""

    COPY_TICKS_ALL: int = c.COPY_TICKS_ALL
    TIMEFRAME_M1: int = c.TIMEFRAME_M1
    TICK_FLAG_BID: int = c.TICK_FLAG_BID
    TICK_FLAG_ASK: int = c.TICK_FLAG_ASK
    TICK_FLAG_LAST: int = c.TICK_FLAG_LAST
    TICK_FLAG_VOLUME: int = c.TICK_FLAG_VOLUME
    TICK_FLAG_BUY: int = c.TICK_FLAG_BUY
    TICK_FLAG_SELL: int = c.TICK_FLAG_SELL
    BOOK_TYPE_SELL: int = c.BOOK_TYPE_SELL
    BOOK_TYPE_BUY: int = c.BOOK_TYPE_BUY
    BOOK_TYPE_SELL_MARKET: int = c.BOOK_TYPE_SELL_MARKET
    BOOK_TYPE_BUY_MARKET: int = c.BOOK_TYPE_BUY_MARKET

    def _adopt_constants(self, reported: Mapping[str, Any]) -> None:
        """Take the module's values, refusing any that differ from the documented ones: frames
        and the replay parser are written against the documented values."""
        wrong = {
            name: reported.get(name)
            for name, want in c.EXPECTED.items()
            if name in reported and reported[name] != want
        }
        if wrong:
            raise Mt5Unavailable(f"MetaTrader5 constants differ from the documented ones: {wrong}")
        for name, value in reported.items():
            if name in c.EXPECTED:
                setattr(self, name, int(value))


def as_tick_array(raw: Any) -> TickArray:
    """A copy_ticks_* result checked against the documented layout (fields by name)."""
    return _structured(raw, c.TICK_DTYPE, "ticks")


def as_rate_array(raw: Any) -> RateArray:
    return _structured(raw, c.RATE_DTYPE, "rates")


def _structured(raw: Any, dtype: np.dtype[np.void], what: str) -> npt.NDArray[np.void]:
    arr = np.asarray(raw)
    names = arr.dtype.names
    if names is None or not set(dtype.names or ()) <= set(names):
        raise Mt5Error(f"unexpected {what} array layout: {arr.dtype}")
    if arr.dtype == dtype:
        return arr
    out = np.empty(arr.shape, dtype=dtype)
    for name in dtype.names or ():
        out[name] = arr[name]
    return out
