"""The MetaTrader5 package in this process (Windows, beside a running terminal) as an Mt5Client.

Any module object with the package's API can stand in for it, which is how the tests drive it.
"""

from __future__ import annotations

import importlib
import sys
from datetime import datetime
from types import ModuleType
from typing import Any

from of_feed_mt5.client import (
    BookLevel,
    DocumentedConstants,
    Mt5Error,
    Mt5Unavailable,
    RateArray,
    SymbolDetails,
    TickArray,
    as_rate_array,
    as_tick_array,
)
from of_feed_mt5.constants import EXPECTED

# Read at run time, not narrowed by the type checker's idea of the platform.
_PLATFORM: str = sys.platform


def _import_package() -> ModuleType:
    if _PLATFORM != "win32":
        raise Mt5Unavailable(
            "the MetaTrader5 package runs only on Windows beside a terminal; on this platform set"
            " OF_MT5_BRIDGE_HOST to an mt5linux-compatible RPyC bridge"
        )
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError as err:
        raise Mt5Unavailable(
            f"cannot import MetaTrader5 ({err}); install the package (pip install MetaTrader5)"
        ) from err


class NativeClient(DocumentedConstants):
    """Calls the package directly. Blocking: call it from one worker thread."""

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._mt5: Any = module if module is not None else _import_package()
        self._adopt_constants({n: getattr(self._mt5, n) for n in EXPECTED if hasattr(self._mt5, n)})

    def initialize(self, path: str | None = None, *, timeout: int | None = None) -> bool:
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        ok = self._mt5.initialize(path, **kwargs) if path else self._mt5.initialize(**kwargs)
        return bool(ok)

    def login(
        self, login: int, *, password: str = "", server: str = "", timeout: int | None = None
    ) -> bool:
        kwargs: dict[str, Any] = {}
        if password:
            kwargs["password"] = password
        if server:
            kwargs["server"] = server
        if timeout is not None:
            kwargs["timeout"] = timeout
        return bool(self._mt5.login(login, **kwargs))

    def shutdown(self) -> None:
        self._mt5.shutdown()

    def last_error(self) -> tuple[int, str]:
        err = self._mt5.last_error()
        try:
            code, message = err
            return int(code), str(message)
        except (TypeError, ValueError):
            return -1, f"unreadable last_error(): {err!r}"

    def symbol_info(self, symbol: str) -> SymbolDetails | None:
        info = self._mt5.symbol_info(symbol)
        return None if info is None else SymbolDetails.from_object(info)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        return bool(self._mt5.symbol_select(symbol, enable))

    def symbols_get(self, group: str | None = None) -> list[SymbolDetails] | None:
        found = self._mt5.symbols_get(group=group) if group else self._mt5.symbols_get()
        return None if found is None else [SymbolDetails.from_object(s) for s in found]

    def copy_ticks_from(
        self, symbol: str, date_from: datetime, count: int, flags: int
    ) -> TickArray | None:
        _require_aware(date_from)
        ticks = self._mt5.copy_ticks_from(symbol, date_from, count, flags)
        return None if ticks is None else as_tick_array(ticks)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime, date_to: datetime
    ) -> RateArray | None:
        _require_aware(date_from)
        _require_aware(date_to)
        rates = self._mt5.copy_rates_range(symbol, timeframe, date_from, date_to)
        return None if rates is None else as_rate_array(rates)

    def market_book_add(self, symbol: str) -> bool:
        return bool(self._mt5.market_book_add(symbol))

    def market_book_get(self, symbol: str) -> tuple[BookLevel, ...] | None:
        book = self._mt5.market_book_get(symbol)
        if book is None:
            return None
        return tuple(
            BookLevel(
                int(b.type),
                float(b.price),
                int(b.volume),
                # Older builds lack volume_dbl; the int volume is then all there is.
                float(getattr(b, "volume_dbl", b.volume)),
            )
            for b in book
        )

    def market_book_release(self, symbol: str) -> bool:
        return bool(self._mt5.market_book_release(symbol))


def _require_aware(when: datetime) -> None:
    # A naive datetime is read as the local zone by the package and by mt5linux.
    if when.tzinfo is None or when.utcoffset() is None:
        raise Mt5Error(f"naive datetime {when!r}: pass tz-aware UTC", code=-2)
