"""The wire types of the whole pipeline: one tagged union of msgspec Structs.

Units (decided once; docs/streams.md repeats them):
  * timestamps are ``int`` nanoseconds since the Unix epoch, UTC. ``ts_event`` is the venue's event
    time, ``ts_recv`` the time our feed received it (our wall clock, at the edge only);
  * prices are ``float`` on the instrument's tick grid (venue quote currency);
  * sizes are ``float`` in the venue's base unit (coins, contracts or lots) unless ``size_kind``
    says the number is a tick count (MT5 quote-only symbols), which is never real volume;
  * sides are the aggressor's: ``Side.BUY`` (+1) lifted the ask, ``Side.SELL`` (-1) hit the bid;
  * book levels are ``(price, size)`` pairs, best first; in a delta, size 0 deletes the level.

Schema evolution is append-only: new fields go last with a default; tags and field order never
change. Every type is ``array_like`` (positional: tag first, then the fields in declaration order)
for size and speed, and because one union cannot mix positional and keyed structs. ``WIRE_VERSION``
is bumped on any change and recorded in the docs.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Literal, TypeAlias

import msgspec

WIRE_VERSION: Final = 3


class Side(IntEnum):
    """The aggressor's side."""

    SELL = -1
    BUY = 1


class SideSource(IntEnum):
    """Where the aggressor side came from; anything but EXCHANGE is an estimate."""

    EXCHANGE = 0
    TICK_RULE = 1
    QUOTE_RULE = 2


class SizeKind(IntEnum):
    """What a trade's size counts."""

    REAL = 0  # traded volume reported by the venue
    TICKS = 1  # quote-change count of an instrument without volume (MT5 FX): not real volume


class Direction(IntEnum):
    SHORT = -1
    NEUTRAL = 0
    LONG = 1


Level: TypeAlias = tuple[float, float]


class _Hot(msgspec.Struct, frozen=True, array_like=True, gc=False, tag_field="k"):
    """Base of positional market-data messages (tag first, then fields in order)."""


class _Rare(msgspec.Struct, frozen=True, kw_only=True, array_like=True, tag_field="k"):
    """Base of lower-rate messages (positional too: msgspec unions cannot mix the two forms)."""


# --- market data: feeds -> of:{SYM}:trades / of:{SYM}:book -----------------------------------


class Trade(_Hot, tag="trade", frozen=True):
    """One print. ``trade_id`` is the venue's id (unique per instrument); ``seq`` the venue's
    cross-sequence when it has one (Bybit ``seq``), else 0."""

    ts_event: int
    ts_recv: int
    price: float
    size: float
    side: Side
    trade_id: str
    side_source: SideSource = SideSource.EXCHANGE
    seq: int = 0
    block: bool = False
    backfill: bool = False
    size_kind: SizeKind = SizeKind.REAL


class BookSnapshot(_Hot, tag="book_snapshot", frozen=True):
    """A full book image that replaces any previous one. ``seq`` is the venue's update id."""

    ts_event: int
    ts_recv: int
    seq: int
    bids: list[Level]
    asks: list[Level]
    depth: int = 0


class BookDelta(_Hot, tag="book_delta", frozen=True):
    """Changed levels since the previous book message; valid only if ``seq`` follows it by one."""

    ts_event: int
    ts_recv: int
    seq: int
    bids: list[Level]
    asks: list[Level]


class Quote(_Hot, tag="quote", frozen=True):
    """Top of book (MT5 bid/ask ticks)."""

    ts_event: int
    ts_recv: int
    bid: float
    ask: float
    bid_size: float = 0.0
    ask_size: float = 0.0


class Heartbeat(_Hot, tag="heartbeat", frozen=True):
    """Proof of life from a feed: event time keeps advancing when the market is quiet."""

    ts_event: int
    ts_recv: int
    source: str


class Gap(_Hot, tag="gap", frozen=True):
    """Data may be missing between the last good message and the next one on this stream."""

    ts_event: int
    ts_recv: int
    stream: Literal["trades", "book"]
    reason: str
    last_seq: int = 0
    next_seq: int = 0


class InstrumentSpec(_Rare, tag="instrument_spec", frozen=True):
    """The venue's contract facts for an instrument, as its feed read them (Bybit instruments-info,
    MT5 symbol_info), on the trades stream: at feed start, on reconnect and when they change.

    ``tick_size`` is the venue's price increment: analytics uses it, not the registry's, for the
    book window and the footprint grid (docs/analytics.md). ``size_step`` is the quantity step
    (0 when the venue gives none). ``ts_event`` is venue time where the venue says it (Bybit's
    REST ``time``), else our receive time; it is no watermark: consumers act on it in stream order.
    """

    ts_event: int
    ts_recv: int
    venue: str  # e.g. "bybit:linear", "mt5"
    venue_symbol: str
    tick_size: float
    size_step: float = 0.0


# --- analytics -> of:{SYM}:bars / :profile / :bookstats --------------------------------------


class FootprintRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Volume at one price row: at the bid (sell aggressors) and at the ask (buy aggressors)."""

    price: float
    bid_volume: float
    ask_volume: float
    trades: int


class ImbalanceRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A footprint imbalance at row ``price``: ``BUY`` = ask dominance, ``SELL`` = bid dominance;
    ``ratio`` = dominant / opposite volume (``inf`` when the opposite side is empty)."""

    price: float
    side: Side
    ratio: float


class StackedRun(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``rows`` consecutive footprint rows, ``low`` to ``high`` (row prices), with same-side
    imbalances."""

    side: Side
    low: float
    high: float
    rows: int


class BigPrint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One trade at or above the instrument's big-trade size."""

    ts_event: int
    price: float
    size: float
    side: Side


class Bar(_Hot, tag="bar", frozen=True):
    """A time bar with its footprint. ``final`` is set once, when the bar closes; ``rev`` counts
    the publications of this bar (partials, then the close, then any amendments).

    Wire version 2 appended the footprint analytics: delta at the high / low row, the session
    (``cvd``) and continuous (``cvd_total``) cumulative delta as of the bar's last trade, its
    imbalances, stacked runs, unfinished auctions and big prints."""

    timeframe: str
    open_ts: int
    close_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    sell_volume: float
    delta: float
    delta_min: float
    delta_max: float
    trades: int
    vwap: float
    poc: float
    footprint: list[FootprintRow]
    final: bool
    rev: int = 0
    delta_at_high: float = 0.0
    delta_at_low: float = 0.0
    cvd: float = 0.0
    cvd_total: float = 0.0
    imbalances: list[ImbalanceRow] = msgspec.field(default_factory=list)
    stacked: list[StackedRun] = msgspec.field(default_factory=list)
    unfinished_high: bool = False
    unfinished_low: bool = False
    big_trades: list[BigPrint] = msgspec.field(default_factory=list)
    gapped: bool = False  # a Gap marker fell in this bar: trades may be missing from it


class ProfileUpdate(_Rare, tag="profile", frozen=True):
    """A developing (or closed, ``final``) volume profile of a session or composite."""

    scope: str  # "session" or "composite:<N>"
    session_id: str
    session_start: int
    session_end: int
    ts_event: int
    poc: float
    vah: float
    val: float
    volume: float
    rows: list[Level] = msgspec.field(default_factory=list)
    shape: str = ""
    final: bool = False
    hvn: list[float] = msgspec.field(default_factory=list)  # high-volume nodes (row prices)
    lvn: list[float] = msgspec.field(default_factory=list)  # low-volume nodes
    single_prints: list[float] = msgspec.field(default_factory=list)  # session scope only
    naked_pocs: list[float] = msgspec.field(default_factory=list)  # prior POCs not traded since
    # Wire version 3: what the histogram counts. TICKS: a tick-volume profile (quote changes of a
    # quote-only instrument, MT5 FX and CFDs), never real volume.
    volume_kind: SizeKind = SizeKind.REAL


class BookStats(_Rare, tag="book_stats", frozen=True):
    """Metrics of the live book; ``valid`` is false between a gap and the next snapshot."""

    ts_event: int
    valid: bool
    best_bid: float = 0.0
    best_ask: float = 0.0
    spread: float = 0.0
    bid_depth: float = 0.0
    ask_depth: float = 0.0
    imbalance: float = 0.0
    thin_levels: list[float] = msgspec.field(default_factory=list)
    walls: list[Level] = msgspec.field(default_factory=list)
    # The side price moves to most easily: LONG when asks are thinner than bids in the window.
    least_resistance: Direction = Direction.NEUTRAL


class Consumption(_Rare, tag="consumption", frozen=True):
    """Size removed from one book level, split into traded and cancelled parts."""

    ts_event: int
    side: Side
    price: float
    removed: float
    traded: float
    cancelled: float
    refilled: bool = False


# --- patterns / aggregator -> of:{SYM}:patterns / :signals / :tradeevents --------------------


class PatternSignal(_Rare, tag="pattern", frozen=True):
    """A detected pattern; ``signal_id`` is a pure function of its inputs (idempotent)."""

    signal_id: str
    ts_event: int
    pattern: Literal["absorption", "initiative", "sweep", "exhaustion", "divergence"]
    direction: Direction
    price: float
    strength: float
    timeframe: str = "1m"
    details: dict[str, float | int | str | bool] = msgspec.field(default_factory=dict)


class KeyLevel(msgspec.Struct, frozen=True, array_like=True):
    kind: str  # poc, vah, val, hvn, lvn, naked_poc, single_print, ...
    price: float
    strength: float = 0.0
    qualified: bool = False


class Bias(_Rare, tag="bias", frozen=True):
    """The day's frame: directional bias and the qualified levels to trade from."""

    session_id: str
    ts_event: int
    bias: Direction
    shape: str = ""
    levels: list[KeyLevel] = msgspec.field(default_factory=list)


class TradeEvent(_Rare, tag="trade_event", frozen=True):
    """A transition of the per-instrument trade state machine."""

    event_id: str
    trade_id: str
    ts_event: int
    kind: Literal["watch", "entry", "breakeven", "trail", "exit", "cancel"]
    direction: Direction
    price: float
    stop: float = 0.0
    target: float = 0.0
    pnl_ticks: float | None = None
    reason: str = ""


Message: TypeAlias = (
    Trade
    | BookSnapshot
    | BookDelta
    | Quote
    | Heartbeat
    | Gap
    | Bar
    | ProfileUpdate
    | BookStats
    | Consumption
    | PatternSignal
    | Bias
    | TradeEvent
    | InstrumentSpec
)

MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Trade,
    BookSnapshot,
    BookDelta,
    Quote,
    Heartbeat,
    Gap,
    Bar,
    ProfileUpdate,
    BookStats,
    Consumption,
    PatternSignal,
    Bias,
    TradeEvent,
    InstrumentSpec,
)
