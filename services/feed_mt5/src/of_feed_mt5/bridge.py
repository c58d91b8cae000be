"""An Mt5Client over an mt5linux-compatible RPyC *classic* bridge (Wine or Windows terminal host).

Remote ``eval`` of whitelisted code strings; results copied back with ``rpyc.classic.obtain``.
"""

from __future__ import annotations

import contextlib
import re
import socket
from datetime import datetime
from typing import Any, Final

import rpyc
from rpyc.core.service import ClassicClient
from rpyc.core.stream import SocketStream
from rpyc.utils.factory import connect_stream

from of_feed_mt5.client import (
    SYMBOL_FIELDS,
    BookLevel,
    DocumentedConstants,
    Mt5ConnectionError,
    Mt5Error,
    RateArray,
    SymbolDetails,
    TickArray,
    as_rate_array,
    as_tick_array,
)
from of_feed_mt5.constants import EXPECTED

DEFAULT_PORT: Final = 18812
_CONNECT_TIMEOUT_S: Final = 5.0

# Broker names seen in the wild: EURUSD, EURUSDm, EURUSD.cash, #NAS100, US30+, GER40-ECN,
# XAUUSD_i, BRENT!, BTCUSD$. Quotes, backslashes, brackets and blanks can never pass.
_SYMBOL: Final = re.compile(r"^[A-Za-z0-9._#+\-!$&@]{1,64}$")
_GROUP: Final = re.compile(r"^[A-Za-z0-9._#+\-!$&@*,]{1,256}$")

_NOT_CONNECTED: Final = (-10004, "bridge not connected")

# Runs once per connection on the bridge: small converters so only builtins and numpy arrays
# cross the wire (the package's own SymbolInfo/BookInfo classes do not exist on this side).
_REMOTE_SETUP: Final = f"""
import datetime
import MetaTrader5 as mt5
_OF_FIELDS = {SYMBOL_FIELDS!r}
def _of_symbol(s):
    return None if s is None else {{k: getattr(s, k, None) for k in _OF_FIELDS}}
def _of_symbols(found):
    return None if found is None else [_of_symbol(s) for s in found]
def _of_book(book):
    if book is None:
        return None
    return [
        (int(b.type), float(b.price), int(b.volume), float(getattr(b, "volume_dbl", b.volume)))
        for b in book
    ]
def _of_constants():
    return {{n: getattr(mt5, n) for n in {tuple(EXPECTED)!r} if hasattr(mt5, n)}}
"""


def check_symbol_name(name: str) -> str:
    """``name`` if it is safe to interpolate into a bridge code string, else Mt5Error."""
    if not isinstance(name, str) or not _SYMBOL.match(name):
        raise Mt5Error(f"refusing symbol name {name!r}: letters, digits and ._#+-!$&@ only", -2)
    return name


def _when(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Mt5Error(f"naive datetime {value!r}: pass tz-aware UTC", code=-2)
    # float repr round-trips exactly; the bridge rebuilds the same instant, tz-aware UTC
    return f"datetime.datetime.fromtimestamp({value.timestamp()!r}, datetime.timezone.utc)"


class BridgeClient(DocumentedConstants):
    """Connects on ``initialize`` and disconnects on ``shutdown``. Blocking, one thread at a time.

    We speak the protocol ourselves (the mt5linux 1.1.x client insists on Docker). Symbol names
    are whitelisted before they enter a code string; secrets travel as values bound in the
    remote namespace, never spliced into code.

    This is ``rpyc.classic.connect(host, port)`` except for the local service: the classic one
    would also expose *this* process to the bridge; ``ClassicClient`` speaks the same classic
    protocol while exposing nothing.
    """

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, timeout_s: float = 60.0) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._conn: Any = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    # --- connection --------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.connected:
            return self._conn
        try:
            # Our own socket: rpyc's connect leaks it when the connection is refused.
            sock = socket.create_connection((self._host, self._port), timeout=_CONNECT_TIMEOUT_S)
        except OSError as err:
            raise Mt5ConnectionError(f"bridge {self.address} unreachable: {err}", -10004) from err
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            config = {"sync_request_timeout": self._timeout_s}
            conn = connect_stream(SocketStream(sock), ClassicClient, config)
        except BaseException:
            sock.close()
            raise
        self._conn = conn
        try:
            self._execute(_REMOTE_SETUP)
            self._adopt_constants(self._eval("_of_constants()"))
        except BaseException:
            self._close()
            raise
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                conn.close()

    def _execute(self, code: str) -> None:
        self._call(lambda conn: conn.execute(code), "setup")

    def _eval(self, expr: str) -> Any:
        return self._call(lambda conn: rpyc.classic.obtain(conn.eval(expr)), expr)

    def _call(self, fn: Any, what: str) -> Any:
        conn = self._conn
        if conn is None or conn.closed:
            raise Mt5ConnectionError(f"bridge {self.address} not connected", -10004)
        try:
            return fn(conn)
        except (EOFError, OSError, TimeoutError) as err:
            # After a timeout a late reply may still arrive: the connection is unusable.
            self._close()
            raise Mt5ConnectionError(f"bridge {self.address} lost during {what}: {err!r}") from err
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise Mt5Error(f"bridge call {what} raised {type(err).__name__}: {first}") from err

    def _with_values(self, values: dict[str, Any], expr: str) -> Any:
        """Evaluate ``expr`` with ``values`` bound as remote names, then unbind them."""
        if not values:
            return self._eval(expr)
        # One item at a time: strings and ints cross by value, a dict would cross as a proxy.
        for name, value in values.items():
            self._call(lambda conn, n=name, v=value: conn.namespace.__setitem__(n, v), "bind")
        try:
            return self._eval(expr)
        finally:
            if self.connected:
                self._call(lambda conn: [conn.namespace.pop(k, None) for k in values], "unbind")

    # --- the MetaTrader5 API -----------------------------------------------------------------

    def initialize(self, path: str | None = None, *, timeout: int | None = None) -> bool:
        self._connect()
        args: dict[str, Any] = {}
        if path:
            args["_of_path"] = path
        if timeout:
            args["_of_timeout"] = int(timeout)
        params = ", ".join(
            ["_of_path"] * ("_of_path" in args) + ["timeout=_of_timeout"] * ("_of_timeout" in args)
        )
        return bool(self._with_values(args, f"mt5.initialize({params})"))

    def login(
        self, login: int, *, password: str = "", server: str = "", timeout: int | None = None
    ) -> bool:
        args: dict[str, Any] = {"_of_login": int(login)}
        kwargs = []
        for name, value in (("password", password), ("server", server), ("timeout", timeout)):
            if value:
                args[f"_of_{name}"] = value
                kwargs.append(f"{name}=_of_{name}")
        return bool(self._with_values(args, f"mt5.login(_of_login, {', '.join(kwargs)})"))

    def shutdown(self) -> None:
        try:
            if self.connected:
                self._eval("mt5.shutdown()")
        finally:
            self._close()

    def last_error(self) -> tuple[int, str]:
        if not self.connected:
            return _NOT_CONNECTED
        code, message = self._eval("tuple(mt5.last_error())")
        return int(code), str(message)

    def symbol_info(self, symbol: str) -> SymbolDetails | None:
        raw = self._eval(f"_of_symbol(mt5.symbol_info({check_symbol_name(symbol)!r}))")
        return None if raw is None else SymbolDetails.from_mapping(raw)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        name = check_symbol_name(symbol)
        return bool(self._eval(f"mt5.symbol_select({name!r}, {bool(enable)!r})"))

    def symbols_get(self, group: str | None = None) -> list[SymbolDetails] | None:
        if group:
            if not _GROUP.match(group):
                raise Mt5Error(f"refusing symbols group filter {group!r}", -2)
            raw = self._eval(f"_of_symbols(mt5.symbols_get(group={group!r}))")
        else:
            raw = self._eval("_of_symbols(mt5.symbols_get())")
        return None if raw is None else [SymbolDetails.from_mapping(s) for s in raw]

    def copy_ticks_from(
        self, symbol: str, date_from: datetime, count: int, flags: int
    ) -> TickArray | None:
        name = check_symbol_name(symbol)
        expr = f"mt5.copy_ticks_from({name!r}, {_when(date_from)}, {int(count)}, {int(flags)})"
        ticks = self._eval(expr)
        return None if ticks is None else as_tick_array(ticks)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime, date_to: datetime
    ) -> RateArray | None:
        name = check_symbol_name(symbol)
        expr = (
            f"mt5.copy_rates_range({name!r}, {int(timeframe)}, {_when(date_from)},"
            f" {_when(date_to)})"
        )
        rates = self._eval(expr)
        return None if rates is None else as_rate_array(rates)

    def market_book_add(self, symbol: str) -> bool:
        return bool(self._eval(f"mt5.market_book_add({check_symbol_name(symbol)!r})"))

    def market_book_get(self, symbol: str) -> tuple[BookLevel, ...] | None:
        raw = self._eval(f"_of_book(mt5.market_book_get({check_symbol_name(symbol)!r}))")
        return None if raw is None else tuple(BookLevel(*level) for level in raw)

    def market_book_release(self, symbol: str) -> bool:
        return bool(self._eval(f"mt5.market_book_release({check_symbol_name(symbol)!r})"))
