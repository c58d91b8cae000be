"""The instrument registry: tick grid, session, venues and detector thresholds of every instrument.
Built-in defaults are the seed's 31 instruments; a TOML file may override fields or add instruments.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any, Final, Literal

import msgspec

from ofcommon.sessions import SESSIONS, SessionName, SessionSpec
from ofcommon.tradingday import TRADING_DAYS, TradingDay, TradingDayName

__all__ = [
    "GROUPS",
    "AbsorptionParams",
    "BybitVenue",
    "DivergenceParams",
    "ExhaustionParams",
    "FootprintParams",
    "Group",
    "InitiativeParams",
    "Instrument",
    "Mt5Venue",
    "ProfileNodes",
    "ProfileParams",
    "Registry",
    "RegistryConfigError",
    "SweepParams",
    "UnknownInstrumentError",
    "Venue",
    "default_instruments",
    "load_registry",
]

Group = Literal["crypto", "forex", "indices", "metals", "energy", "stocks"]
Venue = Literal["bybit", "mt5"]
GROUPS: Final[tuple[Group, ...]] = ("crypto", "forex", "indices", "metals", "energy", "stocks")

# Upper case only, so that OF_INSTRUMENTS can match symbols case-insensitively; a subset of what
# ofcommon.keys accepts inside a stream key's hash tag.
_SYMBOL_PATTERN: Final = r"^[A-Z0-9][A-Z0-9._-]{0,39}$"
_SYMBOL_RE: Final = re.compile(_SYMBOL_PATTERN)

Symbol = Annotated[str, msgspec.Meta(pattern=_SYMBOL_PATTERN)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(gt=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=1)]
BrokerName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AbsorptionParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Absorption thresholds (seed §8.1); defaults are the seed's class defaults."""

    min_aggressive_volume: Positive = 50.0
    max_price_displacement_ticks: NonNegative = 2.0
    rolling_window_seconds: Positive = 30.0
    min_attempts: Count = 2
    # The seed applies it to a footprint level's total volume, not to a single trade (§19.20).
    big_trade_filter: NonNegative = 10.0


class InitiativeParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Initiative-auction thresholds (seed §8.2)."""

    min_delta_threshold: Positive = 30.0
    volume_acceleration_min: NonNegative = 1.5
    min_price_displacement_ticks: NonNegative = 3.0
    delta_price_alignment: bool = True


class SweepParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Book-sweep thresholds (seed §8.3)."""

    min_levels_swept: Count = 3
    max_volume_per_level: Positive = 20.0
    max_time_ms: Count = 2000
    thin_book_threshold: NonNegative = 10.0


class ExhaustionParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exhaustion thresholds (seed §8.4)."""

    min_bars_declining: Count = 3
    volume_decline_pct: Fraction = 0.30
    requires_contrarian_imbalance: bool = True


class DivergenceParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delta-divergence thresholds (seed §8.5); the seed never overrides them per instrument."""

    lookback_bars: Annotated[int, msgspec.Meta(ge=2)] = 10
    # In ticks of the instrument. The seed multiplies by a hard-coded 0.1 instead (§19.13).
    min_price_new_extreme_ticks: NonNegative = 2.0
    delta_failure_pct: Fraction = 0.8


ProfileNodes = Literal["smoothed", "seed"]


class ProfileParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Volume-profile settings (of_analytics.profile); the row height is ``Instrument.row_size``.

    ``value_area_pct``: the value area's share of the volume (the professional 70 %; the seed
    used 68 %). ``nodes``: the HVN/LVN rule, ``smoothed`` (extrema of the smoothed histogram) or
    ``seed`` (the seed's σ rule, LVNs only, ``lvn_stddev_factor`` σ below the mean, 1.5 unless
    set). ``merge_max_days``: the sessions of ``composite:N``. Every field is used; one the
    engine would ignore (a σ factor without the σ rule) is refused at load."""

    value_area_pct: Fraction = 0.70
    lvn_stddev_factor: NonNegative | None = None
    merge_max_days: Count = 3
    nodes: ProfileNodes = "smoothed"

    def __post_init__(self) -> None:
        if self.lvn_stddev_factor is not None and self.nodes != "seed":
            raise ValueError(
                "lvn_stddev_factor is used only by the seed's σ LVN rule: set"
                ' nodes = "seed" with it, or remove it'
            )


ImbalancePreset = Literal["default", "atas", "ninjatrader", "tradingview", "seed"]


class FootprintParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Footprint analytics of the instrument's bars (of_analytics.footprint).

    ``row_ticks`` is the footprint row in ticks (``Instrument.footprint_row``);
    ``imbalance_preset`` names the platform definition (default: diagonal, 300 %);
    ``imbalance_ratio`` and ``imbalance_min_volume`` override its ratio and minimum volume when
    set. A print is a big trade at ``big_trade_size`` or more, or, with 0, at the
    ``big_trade_percentile`` of the last ``big_trade_window`` prints."""

    # Height of a footprint row in whole ticks of the instrument's tick (the tick the engines are
    # built with, which may be the venue's): fixed, never automatic. The profile keeps its own
    # ``row_size``. New instruments default to tick-level rows.
    row_ticks: Count = 1
    imbalance_preset: ImbalancePreset = "default"
    imbalance_ratio: Annotated[float, msgspec.Meta(gt=1)] | None = None
    imbalance_min_volume: NonNegative | None = None
    stacked_rows: Annotated[int, msgspec.Meta(ge=2)] = 3
    big_trade_size: NonNegative = 0.0
    big_trade_percentile: Annotated[float, msgspec.Meta(gt=0, lt=100)] = 99.0
    big_trade_window: Annotated[int, msgspec.Meta(ge=100)] = 1000


class BybitVenue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the instrument trades on Bybit v5 (one WebSocket connection per category)."""

    category: Literal["linear", "spot"]
    symbol: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,40}$")]


class Mt5Venue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Broker symbol names to try in order: the primary name first, then known aliases."""

    names: Annotated[tuple[BrokerName, ...], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("mt5.names: at least one broker symbol name is needed")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"mt5.names: names repeat in {list(self.names)}")


class Instrument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One instrument. Prices are on the ``tick_size`` grid; profiles use ``row_size`` rows."""

    symbol: Symbol
    group: Group
    tick_size: Positive
    # The seed's "VP tick": height of a volume-profile row, a whole number of ticks.
    row_size: Positive
    session: SessionName
    bybit: BybitVenue | None = None
    mt5: Mt5Venue | None = None
    # The venue whose feed publishes the instrument's streams (one source at a time); unset:
    # Bybit where it lists the instrument, else MT5 (see feed_venue).
    source: Venue | None = None
    absorption: AbsorptionParams = msgspec.field(default_factory=AbsorptionParams)
    initiative: InitiativeParams = msgspec.field(default_factory=InitiativeParams)
    sweep: SweepParams = msgspec.field(default_factory=SweepParams)
    exhaustion: ExhaustionParams = msgspec.field(default_factory=ExhaustionParams)
    divergence: DivergenceParams = msgspec.field(default_factory=DivergenceParams)
    profile: ProfileParams = msgspec.field(default_factory=ProfileParams)
    footprint: FootprintParams = msgspec.field(default_factory=FootprintParams)
    # Where 1D (and 4h) bars roll over; None: the default of the group and session (day_spec).
    trading_day: TradingDayName | None = None
    # Overrides of the aggregator's rules for this instrument ([instruments.SYMBOL.aggregator]
    # with ``framing`` and ``machine`` tables, of_aggregator.params); the aggregator validates
    # them when it starts, since their schema is its own.
    aggregator: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _SYMBOL_RE.match(self.symbol):
            raise ValueError(
                f"symbol: {self.symbol!r} must be upper-case letters, digits, '.', '_' or '-'"
            )
        if _ticks_per_row(self.row_size, self.tick_size) is None:
            raise ValueError(
                f"row_size: {self.row_size!r} is not a positive whole multiple of"
                f" tick_size {self.tick_size!r}"
            )
        if self.source is not None and getattr(self, self.source) is None:
            raise ValueError(f"source: {self.source!r} is not a venue of {self.symbol}")

    @property
    def feed_venue(self) -> Venue | None:
        """The one venue that publishes this instrument: ``source``, else Bybit if it lists the
        instrument, else MT5; None without any venue."""
        if self.source is not None:
            return self.source
        if self.bybit is not None:
            return "bybit"
        return "mt5" if self.mt5 is not None else None

    @property
    def session_spec(self) -> SessionSpec:
        return SESSIONS[self.session]

    @property
    def day_spec(self) -> TradingDay:
        """The trading day of the 1D and 4h bars: ``trading_day`` if set, else 17:00 New York
        for FX and the CME-traded markets (metals, energy, the New York index CFDs), the UTC day
        for FULL_DAY instruments (crypto), else the local midnight of the session's exchange."""
        if self.trading_day is not None:
            return TRADING_DAYS[self.trading_day]
        if self.group in ("forex", "metals", "energy") or (
            self.group == "indices" and self.session == "NY_CASH"
        ):
            return TRADING_DAYS["NY_1700"]
        return TRADING_DAYS[_SESSION_DAYS[self.session]]

    @property
    def footprint_row(self) -> float:
        """The footprint row in price: ``footprint.row_ticks`` ticks of this instrument's tick."""
        return self.footprint.row_ticks * self.tick_size

    @property
    def ticks_per_row(self) -> int:
        n = _ticks_per_row(self.row_size, self.tick_size)
        assert n is not None  # checked in __post_init__
        return n


_SESSION_DAYS: Final[Mapping[str, TradingDayName]] = {
    "FULL_DAY": "UTC",
    "NY_CASH": "NY",
    "LONDON": "LONDON",
    "ASIAN": "TOKYO",
}


def _ticks_per_row(row_size: float, tick_size: float) -> int | None:
    if not (row_size > 0 and tick_size > 0):
        return None
    ratio = row_size / tick_size
    n = round(ratio)
    # Decimal tick sizes (0.1, 0.00001) are inexact in binary, so the ratio is compared with a
    # relative tolerance far below one tick yet far above float rounding.
    if n < 1 or not math.isclose(ratio, n, rel_tol=1e-9, abs_tol=1e-9):
        return None
    return int(n)


# The seed's §12 table, column for column. Numbers without a dot are ints in the seed too.
#   absorption: min_aggressive_volume / max_price_displacement_ticks / big_trade_filter
#   initiative: min_delta_threshold / volume_acceleration_min / min_price_displacement_ticks
#   sweep:      min_levels_swept / max_volume_per_level / max_time_ms / thin_book_threshold
#   exhaustion: min_bars_declining / volume_decline_pct
# Every other threshold is the class default above for every instrument (seed §12).
_SEED_TABLE: Final = """
# symbol    group    tick     row     session   absorption initiative  sweep        exhaustion
NAS100USDT  indices  0.1      1.0     NY_CASH   50/2/5     30/1.5/3    3/15/2000/8  3/0.30
SP500       indices  0.1      1.0     NY_CASH   40/2/5     25/1.5/3    3/15/2000/8  3/0.30
DJ30        indices  1.0      5.0     NY_CASH   40/2/5     25/1.5/3    3/15/2000/8  3/0.30
UK100       indices  0.1      1.0     LONDON    30/2/4     20/1.5/3    3/12/2000/6  3/0.30
DAX40       indices  0.1      2.0     LONDON    30/2/4     20/1.5/3    3/12/2000/6  3/0.30
NIKKEI225   indices  1.0      50.0    ASIAN     30/2/4     20/1.5/3    3/12/2000/6  3/0.30
CAC40       indices  0.1      1.0     LONDON    25/2/3     18/1.5/3    3/10/2000/5  3/0.30
ASX200      indices  0.1      1.0     ASIAN     25/2/3     18/1.5/3    3/10/2000/5  3/0.30
HK50        indices  1.0      5.0     ASIAN     25/2/3     18/1.5/3    3/10/2000/5  3/0.30
XAUUSDT     metals   0.01     0.50    NY_CASH   30/3/3     20/1.5/4    3/10/3000/5  3/0.25
XAGUSD      metals   0.001    0.05    FULL_DAY  25/3/3     15/1.5/4    3/8/3000/5   3/0.25
USOIL       energy   0.01     0.10    NY_CASH   30/3/3     20/1.5/4    3/10/2000/5  3/0.25
UKOIL       energy   0.01     0.10    LONDON    30/3/3     20/1.5/4    3/10/2000/5  3/0.25
EURUSD      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
GBPUSD      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
AUDUSD      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
USDCAD      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
USDCHF      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
NZDUSD      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
EURGBP      forex    0.00001  0.0005  FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
USDJPY      forex    0.001    0.05    FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
EURJPY      forex    0.001    0.05    FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
GBPJPY      forex    0.001    0.05    FULL_DAY  20/2/3     15/1.4/3    3/8/2000/5   3/0.25
AAPL        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
TSLA        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
AMZN        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
MSFT        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
NVDA        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
META        stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
GOOGL       stocks   0.01     0.50    NY_CASH   20/2/3     15/1.5/3    3/8/2000/5   3/0.30
BTCUSDT     crypto   0.1      10.0    FULL_DAY  20/3/3     15/1.5/4    3/8/2000/5   3/0.25
"""

# Footprint rows (``footprint.row_ticks``), chosen so that a typical one-minute bar of the market
# in its active hours spans roughly 10-60 rows (aim: 15-30), and so that each divides the profile
# row (``row_size``), which lets a rebuild sum stored footprints into profile rows exactly. The
# typical ranges behind them are in docs/analytics.md ("Footprint rows"): measured on the real
# captures for crypto (Binance BTCUSDT), index futures (CME ES) and FX (EURUSD quotes), published
# typical ranges for the rest. BTCUSDT's tick is Bybit linear's (0.10, instruments-info), not the
# seed's 0.01: 20 ticks = 2.0 USD.
_FOOTPRINT_ROWS: Final = """
NAS100USDT 5   SP500 1   DJ30 1   UK100 2   DAX40 5   NIKKEI225 1   CAC40 2   ASX200 1   HK50 1
XAUUSDT 5   XAGUSD 2   USOIL 1   UKOIL 1
EURUSD 1   GBPUSD 2   AUDUSD 1   USDCAD 1   USDCHF 1   NZDUSD 1   EURGBP 1
USDJPY 2   EURJPY 2   GBPJPY 2
AAPL 1   TSLA 5   AMZN 1   MSFT 2   NVDA 1   META 5   GOOGL 1
BTCUSDT 20
"""

_SEED_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "absorption": ("min_aggressive_volume", "max_price_displacement_ticks", "big_trade_filter"),
    "initiative": (
        "min_delta_threshold",
        "volume_acceleration_min",
        "min_price_displacement_ticks",
    ),
    "sweep": ("min_levels_swept", "max_volume_per_level", "max_time_ms", "thin_book_threshold"),
    "exhaustion": ("min_bars_declining", "volume_decline_pct"),
}

# Broker names for MT5 auto-discovery. First: the seed's configured name (Exness-style "m"
# suffix); then the seed's alias list (§14.4) in its order: 133 names for the 31 instruments.
_MT5_NAMES: Final = """
NAS100USDT  USTECm USTEC NAS100 US100 USTEC.cash NAS100.cash USTECH100 #NAS100 NASDAQ
SP500       US500m US500 SP500 SPX500 US500.cash #SP500 SP500m
DJ30        US30m US30 DJ30 DJI30 US30.cash #DJ30 DJ30m
UK100       UK100m UK100 FTSE100 UK100.cash #UK100
DAX40       DE30m DE30 DE40 DE40m DAX40 GER40 GER30 DE30.cash
NIKKEI225   JP225m JP225 NI225 NIKKEI225 JP225.cash
CAC40       FR40m FR40 CAC40 FRA40 FR40.cash
ASX200      AUS200m AUS200 AU200 ASX200 AUS200.cash
HK50        HK50m HK50 HSI50 HK50.cash
XAUUSDT     XAUUSDm XAUUSD GOLD GOLDm XAUUSD.cash #XAUUSD
XAGUSD      XAGUSDm XAGUSD SILVER SILVERm XAGUSD.cash
USOIL       USOILm USOIL WTI XTIUSD XTIUSDm CrudeOIL USCrude
UKOIL       UKOILm UKOIL BRENT XBRUSD XBRUSDm BrentOIL
EURUSD      EURUSDm EURUSD EURUSD.cash
GBPUSD      GBPUSDm GBPUSD
USDJPY      USDJPYm USDJPY
AUDUSD      AUDUSDm AUDUSD
USDCAD      USDCADm USDCAD
USDCHF      USDCHFm USDCHF
NZDUSD      NZDUSDm NZDUSD
EURGBP      EURGBPm EURGBP
EURJPY      EURJPYm EURJPY
GBPJPY      GBPJPYm GBPJPY
AAPL        AAPLm AAPL #AAPL AAPL.US
TSLA        TSLAm TSLA #TSLA TSLA.US
AMZN        AMZNm AMZN #AMZN AMZN.US
MSFT        MSFTm MSFT #MSFT MSFT.US
NVDA        NVDAm NVDA #NVDA NVDA.US
META        METAm META #META META.US
GOOGL       GOOGLm GOOGL #GOOGL GOOGL.US GOOG GOOGm
BTCUSDT     BTCUSDm BTCUSD BTCUSDT
"""

# Only what the feeds research (feeds.md §A.8) confirmed as listed on Bybit v5. Not mapped on
# purpose: NAS100USDT and SP500 (Bybit has no index perp; QQQUSDT/SPYUSDT are ETFs at another
# price scale, and SPXUSDT is a meme coin), the other indices, and FX (a forex category exists but
# its symbol names are unconfirmed). Brent: feeds.md lists BZUSDT beside CLUSDT (WTI) among the
# commodity perps; BZ is Brent's NYMEX code.
_BYBIT: Final = """
BTCUSDT     linear  BTCUSDT
XAUUSDT     linear  XAUUSDT
XAGUSD      linear  XAGUSDT
USOIL       linear  CLUSDT
UKOIL       linear  BZUSDT
AAPL        linear  AAPLUSDT
TSLA        linear  TSLAUSDT
AMZN        linear  AMZNUSDT
MSFT        linear  MSFTUSDT
NVDA        linear  NVDAUSDT
META        linear  METAUSDT
GOOGL       linear  GOOGLUSDT
"""


def _rows(table: str) -> Iterator[list[str]]:
    for line in table.strip().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.split()


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


@cache
def default_instruments() -> tuple[Instrument, ...]:
    """The seed's 31 instruments with their §12 thresholds, sorted by symbol."""
    mt5 = {row[0]: row[1:] for row in _rows(_MT5_NAMES)}
    cells = [cell for row in _rows(_FOOTPRINT_ROWS) for cell in row]
    fp_rows = dict(zip(cells[::2], map(int, cells[1::2]), strict=True))
    bybit = {row[0]: row[1:] for row in _rows(_BYBIT)}
    out: list[Instrument] = []
    for symbol, group, tick, row, session, *params in _rows(_SEED_TABLE):
        raw: dict[str, Any] = {
            "symbol": symbol,
            "group": group,
            "tick_size": float(tick),
            "row_size": float(row),
            "session": session,
        }
        for (name, fields), cell in zip(_SEED_COLUMNS.items(), params, strict=True):
            raw[name] = dict(zip(fields, map(_number, cell.split("/")), strict=True))
        raw["footprint"] = {"row_ticks": fp_rows.pop(symbol)}
        if symbol in mt5:
            raw["mt5"] = {"names": mt5.pop(symbol)}
        if symbol in bybit:
            category, venue_symbol = bybit.pop(symbol)
            raw["bybit"] = {"category": category, "symbol": venue_symbol}
        out.append(msgspec.convert(raw, Instrument))
    if mt5 or bybit or fp_rows:
        extra = sorted({*mt5, *bybit, *fp_rows})
        raise AssertionError(f"venue or footprint rows without an instrument: {extra}")
    return tuple(sorted(out, key=lambda i: i.symbol))


class UnknownInstrumentError(KeyError):
    """``Registry.get`` of a symbol that is not registered."""

    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument, quotes and all.
        return str(self.args[0]) if self.args else ""


class RegistryConfigError(ValueError):
    """An instrument file that cannot be read or applied; the message names file, symbol, field."""


class Registry:
    """An immutable set of instruments, keyed by symbol."""

    __slots__ = ("_all", "_by_symbol")

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        by_symbol: dict[str, Instrument] = {}
        for inst in instruments:
            if inst.symbol in by_symbol:
                raise ValueError(f"instrument {inst.symbol} is registered twice")
            if inst.symbol.lower() in GROUPS:
                raise ValueError(f"instrument symbol {inst.symbol} collides with a group name")
            by_symbol[inst.symbol] = inst
        self._all: tuple[Instrument, ...] = tuple(sorted(by_symbol.values(), key=_symbol_of))
        self._by_symbol: Mapping[str, Instrument] = {i.symbol: i for i in self._all}

    def all(self) -> tuple[Instrument, ...]:
        """Every instrument, sorted by symbol."""
        return self._all

    def symbols(self) -> tuple[str, ...]:
        return tuple(self._by_symbol)

    def get(self, symbol: str) -> Instrument:
        inst = self._by_symbol.get(symbol)
        if inst is None:
            hint = _did_you_mean(symbol, self._by_symbol)
            raise UnknownInstrumentError(f"unknown instrument {symbol!r}{hint}")
        return inst

    def in_group(self, group: Group) -> tuple[Instrument, ...]:
        return tuple(i for i in self._all if i.group == group)

    def select(self, spec: str) -> tuple[Instrument, ...]:
        """The instruments an ``OF_INSTRUMENTS`` value names, sorted by symbol.

        Empty or ``*``: all. Otherwise comma-separated groups and/or symbols (case-insensitive,
        blanks ignored); the result is their union.
        """
        items = [item.strip() for item in spec.split(",")]
        items = [item for item in items if item]
        if not items or "*" in items:
            return self._all
        chosen: set[str] = set()
        for item in items:
            if item.lower() in GROUPS:
                chosen.update(i.symbol for i in self._all if i.group == item.lower())
            elif item.upper() in self._by_symbol:
                chosen.add(item.upper())
            else:
                hint = _did_you_mean(item, [*GROUPS, *self._by_symbol])
                raise ValueError(
                    f"OF_INSTRUMENTS: unknown group or symbol {item!r}"
                    f" (groups: {', '.join(GROUPS)}){hint}"
                )
        return tuple(i for i in self._all if i.symbol in chosen)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._all)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __repr__(self) -> str:
        return f"Registry({len(self._all)} instruments)"


def _symbol_of(inst: Instrument) -> str:
    return inst.symbol


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    pool = list(candidates)
    by_upper = {c.upper(): c for c in pool}
    matches = difflib.get_close_matches(name.upper(), list(by_upper), n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(by_upper[m]) for m in matches) + "?"


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """The built-in instruments, with the instrument file at ``path`` applied if given.

    The file holds ``[instruments.SYMBOL]`` tables. For a registered symbol a table overrides just
    the fields it names; nested tables (``[instruments.BTCUSDT.absorption]``, ``bybit``) override
    single fields inside, lists replace whole, and ``bybit = false`` / ``mt5 = false`` remove a
    venue. An unregistered symbol is a new instrument: it needs ``group``, ``tick_size``,
    ``row_size`` and ``session``; venues default to none and thresholds to the class defaults.
    An empty ``path`` means no file (the ``OF_REGISTRY_FILE`` default).
    """
    by_symbol = {i.symbol: i for i in default_instruments()}
    if not path:
        return Registry(by_symbol.values())
    name = os.fspath(path)
    for symbol, table in _read_instrument_tables(name).items():
        by_symbol[symbol] = _apply(name, symbol, table, by_symbol.get(symbol))
    return Registry(by_symbol.values())


def _read_instrument_tables(name: str) -> dict[str, dict[str, Any]]:
    try:
        with open(name, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise RegistryConfigError(f"{name}: cannot read instrument file: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise RegistryConfigError(f"{name}: invalid TOML: {e}") from e
    unknown = sorted(set(doc) - {"instruments"})
    if unknown:
        raise RegistryConfigError(
            f"{name}: unknown top-level key {unknown[0]!r} (only [instruments.SYMBOL] tables)"
        )
    tables = doc.get("instruments", {})
    if not isinstance(tables, dict):
        raise RegistryConfigError(f"{name}: 'instruments' must be a table of [instruments.SYMBOL]")
    for symbol, table in tables.items():
        if not isinstance(table, dict):
            raise RegistryConfigError(
                f"{name}: instruments.{symbol} must be a table, got {type(table).__name__}"
            )
    return tables


def _apply(name: str, symbol: str, table: dict[str, Any], base: Instrument | None) -> Instrument:
    where = f"{name}: [instruments.{symbol}]"
    if not _SYMBOL_RE.match(symbol):
        raise RegistryConfigError(
            f"{where} symbol must be upper-case letters, digits, '.', '_' or '-'"
        )
    if "symbol" in table and table["symbol"] != symbol:
        raise RegistryConfigError(
            f"{where} symbol: {table['symbol']!r} differs from the table name {symbol!r}"
        )
    merged: dict[str, Any] = {"symbol": symbol} if base is None else msgspec.to_builtins(base)
    for key, value in table.items():
        if key in ("bybit", "mt5") and value is False:
            merged[key] = None
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return msgspec.convert(merged, Instrument)
    except msgspec.ValidationError as e:
        hint = ""
        if base is None and "missing required field" in str(e):
            hint = " (a new instrument needs group, tick_size, row_size and session)"
        raise RegistryConfigError(f"{where} {_describe(e, merged)}{hint}") from None


_AT: Final = re.compile(r"^(?P<msg>.*?) - at `\$\.(?P<path>[^`]+)`$")


def _describe(err: msgspec.ValidationError, merged: Mapping[str, Any]) -> str:
    """``field.path = value: message`` from msgspec's ``message - at `$.field.path```."""
    text = str(err).replace("`", "")
    m = _AT.match(str(err))
    if m is None:
        return text[:1].lower() + text[1:]
    path, msg = m["path"], m["msg"].replace("`", "")
    msg = msg[:1].lower() + msg[1:]
    value: Any = merged
    for part in path.split("."):
        if not (isinstance(value, dict) and part in value):
            return f"{path}: {msg}"
        value = value[part]
    if isinstance(value, dict | list):
        return f"{path}: {msg}"
    return f"{path} = {value!r}: {msg}"
