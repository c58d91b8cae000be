"""A fake ``MetaTrader5`` module: the package's API surface over a scripted terminal, for tests.

Importable as ``MetaTrader5`` on an RPyC classic server (fake_mt5_server.py), as mt5linux serves it.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__version__ = "5.0.6231-fake"
__author__ = "OrderFlow tests"

# --- constants (values of the MetaTrader5 package) -------------------------------------------

TIMEFRAME_M1 = 1
TIMEFRAME_M2 = 2
TIMEFRAME_M3 = 3
TIMEFRAME_M4 = 4
TIMEFRAME_M5 = 5
TIMEFRAME_M6 = 6
TIMEFRAME_M10 = 10
TIMEFRAME_M12 = 12
TIMEFRAME_M15 = 15
TIMEFRAME_M20 = 20
TIMEFRAME_M30 = 30
TIMEFRAME_H1 = 1 | 0x4000
TIMEFRAME_H2 = 2 | 0x4000
TIMEFRAME_H3 = 3 | 0x4000
TIMEFRAME_H4 = 4 | 0x4000
TIMEFRAME_H6 = 6 | 0x4000
TIMEFRAME_H8 = 8 | 0x4000
TIMEFRAME_H12 = 12 | 0x4000
TIMEFRAME_D1 = 24 | 0x4000
TIMEFRAME_W1 = 1 | 0x8000
TIMEFRAME_MN1 = 1 | 0xC000

COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2

TICK_FLAG_BID = 0x02
TICK_FLAG_ASK = 0x04
TICK_FLAG_LAST = 0x08
TICK_FLAG_VOLUME = 0x10
TICK_FLAG_BUY = 0x20
TICK_FLAG_SELL = 0x40

BOOK_TYPE_SELL = 1
BOOK_TYPE_BUY = 2
BOOK_TYPE_SELL_MARKET = 3
BOOK_TYPE_BUY_MARKET = 4

RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

TICK_DTYPE = np.dtype(
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
RATE_DTYPE = np.dtype(
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

_MESSAGES = {
    RES_S_OK: "Success",
    RES_E_FAIL: "Terminal: Call failed",
    RES_E_INVALID_PARAMS: "Terminal: Invalid params",
    RES_E_NOT_FOUND: "Terminal: Not found",
    RES_E_AUTH_FAILED: "Terminal: Authorization failed",
    RES_E_INTERNAL_FAIL_CONNECT: "No IPC connection",
    RES_E_INTERNAL_FAIL_TIMEOUT: "IPC timeout",
}


class BookInfo(NamedTuple):
    type: int
    price: float
    volume: int
    volume_dbl: float


class SymbolInfo(NamedTuple):
    """The package's SymbolInfo, the fields in its order (a subset of the less used ones)."""

    custom: bool = False
    chart_mode: int = 0
    select: bool = False
    visible: bool = False
    session_deals: int = 0
    session_buy_orders: int = 0
    session_sell_orders: int = 0
    volume: int = 0
    volumehigh: int = 0
    volumelow: int = 0
    time: int = 0
    digits: int = 5
    spread: int = 0
    spread_float: bool = True
    ticks_bookdepth: int = 0
    trade_calc_mode: int = 0
    trade_mode: int = 4
    start_time: int = 0
    expiration_time: int = 0
    trade_stops_level: int = 0
    trade_freeze_level: int = 0
    trade_exemode: int = 2
    swap_mode: int = 1
    swap_rollover3days: int = 3
    margin_hedged_use_leg: bool = False
    expiration_mode: int = 15
    filling_mode: int = 1
    order_mode: int = 127
    order_gtc_mode: int = 0
    option_mode: int = 0
    option_right: int = 0
    bid: float = 0.0
    bidhigh: float = 0.0
    bidlow: float = 0.0
    ask: float = 0.0
    askhigh: float = 0.0
    asklow: float = 0.0
    last: float = 0.0
    lasthigh: float = 0.0
    lastlow: float = 0.0
    volume_real: float = 0.0
    volumehigh_real: float = 0.0
    volumelow_real: float = 0.0
    option_strike: float = 0.0
    point: float = 1e-05
    trade_tick_value: float = 1.0
    trade_tick_value_profit: float = 1.0
    trade_tick_value_loss: float = 1.0
    trade_tick_size: float = 1e-05
    trade_contract_size: float = 100000.0
    trade_accrued_interest: float = 0.0
    trade_face_value: float = 0.0
    trade_liquidity_rate: float = 0.0
    volume_min: float = 0.01
    volume_max: float = 200.0
    volume_step: float = 0.01
    volume_limit: float = 0.0
    swap_long: float = 0.0
    swap_short: float = 0.0
    margin_initial: float = 0.0
    margin_maintenance: float = 0.0
    session_volume: float = 0.0
    session_turnover: float = 0.0
    session_interest: float = 0.0
    session_open: float = 0.0
    session_close: float = 0.0
    price_change: float = 0.0
    currency_base: str = ""
    currency_profit: str = ""
    currency_margin: str = ""
    bank: str = ""
    description: str = ""
    exchange: str = ""
    formula: str = ""
    isin: str = ""
    name: str = ""
    page: str = ""
    path: str = ""


@dataclass
class FakeSymbol:
    """One scripted symbol: its full tick history (revealed as the terminal's clock passes it),
    optional M1 bars and DOM snapshots ``(server_ms, levels)``."""

    name: str
    ticks: npt.NDArray[np.void] = field(default_factory=lambda: np.empty(0, TICK_DTYPE))
    rates: npt.NDArray[np.void] | None = None
    books: list[tuple[int, tuple[BookInfo, ...]]] = field(default_factory=list)
    digits: int = 5
    point: float = 1e-05
    tick_size: float = 1e-05
    book_depth: int = 0
    description: str = ""
    path: str = ""
    selected: bool = False
    has_tick_history: bool = True


class FakeTerminal:
    """The scripted terminal behind the module functions (as the real ones act on the IPC link).

    The module has the package's signatures, constants, structured-array dtypes, ``SymbolInfo``/
    ``BookInfo`` named tuples and ``last_error`` codes. It is stricter than the package where we
    rely on a rule: a naive datetime is refused (the package reads it in the local zone), ticks
    and DOM of a symbol outside Market Watch are refused, and ``date_from`` is honoured to the
    whole second only (the less convenient of the two plausible behaviours).

    ``now_ms`` is the terminal's *server* clock in ms (broker time written as an epoch); ticks,
    bars and DOM snapshots become visible once it passes their time. ``login``/``password``, when
    set, are what ``initialize``/``login`` must be given.
    """

    def __init__(
        self,
        now_ms: Callable[[], int],
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
    ) -> None:
        self.now_ms = now_ms
        self.symbols: dict[str, FakeSymbol] = {}
        self.account = (login, password, server)
        self.connected = False
        self.logged_in: int | None = None
        self.books: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, list[tuple[int, str]]] = {}
        self.error: tuple[int, str] = (RES_S_OK, _MESSAGES[RES_S_OK])
        self.lock = threading.RLock()

    # --- scripting ---------------------------------------------------------------------------

    def add(self, symbol: FakeSymbol) -> FakeSymbol:
        order = np.argsort(symbol.ticks["time_msc"], kind="stable")
        symbol.ticks = symbol.ticks[order]
        self.symbols[symbol.name] = symbol
        return symbol

    def fail(self, function: str, code: int, message: str = "", times: int = 1) -> None:
        """Make the next ``times`` calls of ``function`` fail with ``(code, message)``."""
        entry = (code, message or _MESSAGES.get(code, "Terminal: Call failed"))
        self.failures.setdefault(function, []).extend([entry] * times)

    def drop_link(self) -> None:
        """The terminal went away: every call fails with an IPC error until ``initialize``."""
        self.connected = False

    # --- helpers -----------------------------------------------------------------------------

    def _enter(self, function: str, *, needs_link: bool = True) -> bool:
        self.calls[function] += 1
        queued = self.failures.get(function)
        if queued:
            self.error = queued.pop(0)
            return False
        if needs_link and not self.connected:
            self.error = (RES_E_INTERNAL_FAIL_CONNECT, _MESSAGES[RES_E_INTERNAL_FAIL_CONNECT])
            return False
        self.error = (RES_S_OK, _MESSAGES[RES_S_OK])
        return True

    def _fail(self, code: int, message: str = "") -> None:
        self.error = (code, message or _MESSAGES.get(code, "Terminal: Call failed"))

    def visible_ticks(self, sym: FakeSymbol) -> npt.NDArray[np.void]:
        end = int(np.searchsorted(sym.ticks["time_msc"], self.now_ms(), side="right"))
        return sym.ticks[:end]

    def info(self, sym: FakeSymbol) -> SymbolInfo:
        seen = self.visible_ticks(sym)
        last = seen[-1] if len(seen) else None
        return SymbolInfo(
            select=sym.selected,
            visible=sym.selected,
            time=int(last["time"]) if last is not None else 0,
            digits=sym.digits,
            ticks_bookdepth=sym.book_depth,
            bid=float(last["bid"]) if last is not None else 0.0,
            ask=float(last["ask"]) if last is not None else 0.0,
            last=float(last["last"]) if last is not None else 0.0,
            point=sym.point,
            trade_tick_size=sym.tick_size,
            description=sym.description,
            name=sym.name,
            path=sym.path or sym.name,
        )


_terminal: FakeTerminal | None = None


def install(terminal: FakeTerminal | None) -> None:
    """Make ``terminal`` the one the module functions talk to (None: no terminal at all)."""
    global _terminal
    _terminal = terminal


def current() -> FakeTerminal:
    if _terminal is None:
        raise RuntimeError("no FakeTerminal installed")
    return _terminal


def _seconds(value: Any) -> int | None:
    """``date_from`` as whole epoch seconds; None for a naive datetime or a bad type."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return None
        return int(value.timestamp() // 1)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


# --- the API ---------------------------------------------------------------------------------


def initialize(
    path: str | None = None,
    *,
    login: int | None = None,
    password: str | None = None,
    server: str | None = None,
    timeout: int | None = None,
    portable: bool = False,
) -> bool:
    term = _terminal
    if term is None:
        return False
    with term.lock:
        if not term._enter("initialize", needs_link=False):
            return False
        if login is not None and not _credentials_ok(term, login, password, server):
            term._fail(RES_E_AUTH_FAILED)
            return False
        term.connected = True
        if login is not None:
            term.logged_in = login
        return True


def login(
    login: int,
    *,
    password: str | None = None,
    server: str | None = None,
    timeout: int | None = None,
) -> bool:
    term = current()
    with term.lock:
        if not term._enter("login"):
            return False
        if not _credentials_ok(term, login, password, server):
            term._fail(RES_E_AUTH_FAILED)
            return False
        term.logged_in = login
        return True


def _credentials_ok(
    term: FakeTerminal, login: int, password: str | None, server: str | None
) -> bool:
    want_login, want_password, want_server = term.account
    return (
        (want_login is None or want_login == login)
        and (want_password is None or want_password == password)
        and (want_server is None or want_server == server)
    )


def shutdown() -> None:
    term = _terminal
    if term is not None:
        with term.lock:
            term.calls["shutdown"] += 1
            term.connected = False
            term.books.clear()


def version() -> tuple[int, int, str] | None:
    term = current()
    with term.lock:
        if not term._enter("version"):
            return None
        return (500, 4620, "1 Jan 2026")


def last_error() -> tuple[int, str]:
    term = _terminal
    if term is None:
        return (RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed, MetaTrader 5 x64 not found")
    return term.error


def symbols_total() -> int | None:
    term = current()
    with term.lock:
        if not term._enter("symbols_total"):
            return None
        return len(term.symbols)


def symbols_get(group: str | None = None) -> tuple[SymbolInfo, ...] | None:
    term = current()
    with term.lock:
        if not term._enter("symbols_get"):
            return None
        names = [n for n in term.symbols if group is None or _in_group(n, group)]
        return tuple(term.info(term.symbols[n]) for n in names)


def _in_group(name: str, group: str) -> bool:
    """The package's group filter: comma-separated wildcards, ``!`` excludes."""
    keep = False
    for pattern in (p.strip() for p in group.split(",")):
        if pattern.startswith("!") and fnmatch.fnmatchcase(name, pattern[1:]):
            return False
        if pattern and not pattern.startswith("!") and fnmatch.fnmatchcase(name, pattern):
            keep = True
    return keep


def symbol_info(symbol: str) -> SymbolInfo | None:
    term = current()
    with term.lock:
        if not term._enter("symbol_info"):
            return None
        sym = term.symbols.get(symbol)
        if sym is None:
            term._fail(RES_E_NOT_FOUND)
            return None
        return term.info(sym)


def symbol_select(symbol: str, enable: bool = True) -> bool:
    term = current()
    with term.lock:
        if not term._enter("symbol_select"):
            return False
        sym = term.symbols.get(symbol)
        if sym is None:
            term._fail(RES_E_NOT_FOUND)
            return False
        sym.selected = bool(enable)
        return True


def _selected(term: FakeTerminal, symbol: str) -> FakeSymbol | None:
    sym = term.symbols.get(symbol)
    if sym is None:
        term._fail(RES_E_NOT_FOUND)
        return None
    if not sym.selected:
        term._fail(RES_E_FAIL, "Terminal: Call failed (symbol not in Market Watch)")
        return None
    return sym


def copy_ticks_from(
    symbol: str, date_from: datetime | int | float, count: int, flags: int
) -> npt.NDArray[np.void] | None:
    term = current()
    with term.lock:
        if not term._enter("copy_ticks_from"):
            return None
        start = _seconds(date_from)
        if start is None or count < 0:
            term._fail(RES_E_INVALID_PARAMS, "Terminal: Invalid params (naive datetime?)")
            return None
        sym = _selected(term, symbol)
        if sym is None:
            return None
        if not sym.has_tick_history:
            term._fail(RES_E_NOT_FOUND, "Terminal: No history")
            return None
        ticks = _by_flags(term.visible_ticks(sym), flags)
        first = int(np.searchsorted(ticks["time_msc"], start * 1000, side="left"))
        return ticks[first : first + count].copy()


def copy_ticks_range(
    symbol: str,
    date_from: datetime | int | float,
    date_to: datetime | int | float,
    flags: int,
) -> npt.NDArray[np.void] | None:
    term = current()
    with term.lock:
        if not term._enter("copy_ticks_range"):
            return None
        start, end = _seconds(date_from), _seconds(date_to)
        if start is None or end is None:
            term._fail(RES_E_INVALID_PARAMS)
            return None
        sym = _selected(term, symbol)
        if sym is None:
            return None
        ticks = _by_flags(term.visible_ticks(sym), flags)
        msc = ticks["time_msc"]
        return ticks[(msc >= start * 1000) & (msc <= end * 1000)].copy()


def _by_flags(ticks: npt.NDArray[np.void], flags: int) -> npt.NDArray[np.void]:
    wanted = {
        COPY_TICKS_INFO: TICK_FLAG_BID | TICK_FLAG_ASK,
        COPY_TICKS_TRADE: TICK_FLAG_LAST | TICK_FLAG_VOLUME,
    }.get(flags)
    if wanted is None:
        return ticks
    out: npt.NDArray[np.void] = ticks[(ticks["flags"] & wanted) != 0]
    return out


def copy_rates_range(
    symbol: str,
    timeframe: int,
    date_from: datetime | int | float,
    date_to: datetime | int | float,
) -> npt.NDArray[np.void] | None:
    term = current()
    with term.lock:
        if not term._enter("copy_rates_range"):
            return None
        start, end = _seconds(date_from), _seconds(date_to)
        if start is None or end is None or timeframe != TIMEFRAME_M1:
            term._fail(RES_E_INVALID_PARAMS)
            return None
        sym = _selected(term, symbol)
        if sym is None:
            return None
        rates = sym.rates if sym.rates is not None else np.empty(0, RATE_DTYPE)
        times = rates["time"]
        return rates[(times >= start) & (times <= end)].copy()


def market_book_add(symbol: str) -> bool:
    term = current()
    with term.lock:
        if not term._enter("market_book_add"):
            return False
        sym = _selected(term, symbol)
        if sym is None:
            return False
        if sym.book_depth <= 0:
            term._fail(RES_E_FAIL, "Terminal: Market depth is not available")
            return False
        term.books.add(symbol)
        return True


def market_book_get(symbol: str) -> tuple[BookInfo, ...] | None:
    term = current()
    with term.lock:
        if not term._enter("market_book_get"):
            return None
        sym = term.symbols.get(symbol)
        if sym is None or symbol not in term.books:
            term._fail(RES_E_FAIL, "Terminal: Call failed (no market_book_add)")
            return None
        now = term.now_ms()
        levels: tuple[BookInfo, ...] = ()
        for at, book in sym.books:
            if at > now:
                break
            levels = book
        return levels


def market_book_release(symbol: str) -> bool:
    term = current()
    with term.lock:
        if not term._enter("market_book_release"):
            return False
        if symbol not in term.books:
            term._fail(RES_E_FAIL)
            return False
        term.books.discard(symbol)
        return True


# --- building scripts ------------------------------------------------------------------------


def ticks(rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.void]:
    """A tick array from ``(time, bid, ask, last, volume, time_msc, flags, volume_real)`` rows."""
    out: npt.NDArray[np.void] = np.array([tuple(r) for r in rows], dtype=TICK_DTYPE)
    return out


def rates(rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.void]:
    out: npt.NDArray[np.void] = np.array([tuple(r) for r in rows], dtype=RATE_DTYPE)
    return out


def book(*levels: tuple[int, float, float]) -> tuple[BookInfo, ...]:
    """DOM entries from ``(type, price, volume)``, in the package's documented order (sells,
    then buys, each by price descending), so a consumer that trusts the order is caught."""
    entries = [BookInfo(t, p, round(v), float(v)) for t, p, v in levels]
    sells = sorted((e for e in entries if e.type in (1, 3)), key=lambda e: -e.price)
    buys = sorted((e for e in entries if e.type in (2, 4)), key=lambda e: -e.price)
    return (*sells, *buys)


def server_now(offset_min: int) -> Callable[[], int]:
    """A terminal clock that is the wall clock in broker server time (UTC + offset)."""

    def now() -> int:
        return int(datetime.now(UTC).timestamp() * 1000) + offset_min * 60_000

    return now


def small_terminal(now_ms: int, **account: Any) -> FakeTerminal:
    """A terminal frozen at ``now_ms`` with EURUSDm: five quotes in one second and a DOM."""
    term = FakeTerminal(lambda: now_ms, **account)
    rows = [
        (now_ms // 1000 - 1, 1.1 + i * 1e-5, 1.2, 0.0, 0, now_ms - 1000 + i // 2, 6, 0.0)
        for i in range(5)
    ]
    term.add(
        FakeSymbol(
            "EURUSDm",
            ticks=ticks(rows),
            rates=rates([(now_ms // 60_000 * 60 - 60, 1.1, 1.2, 1.0, 1.15, 9, 3, 0)]),
            book_depth=5,
            books=[(now_ms - 1, book((1, 1.2, 2.5), (2, 1.1, 1.25), (1, 1.3, 1.0)))],
            description="Euro",
        )
    )
    return term
