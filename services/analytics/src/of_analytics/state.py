"""Snapshot shapes of the analytics engines: plain msgspec Structs, checkpointed as msgpack.
The engines keep richer in-memory structures; ``to_state`` / ``from_state`` convert both ways.
"""

from __future__ import annotations

import msgspec

from of_analytics.bars import BarsState
from of_analytics.venuespec import SpecState
from ofcommon.messages import Side, SizeKind

__all__ = [
    "STATE_VERSION",
    "AnalyticsSnapshot",
    "BookState",
    "ClosedSessionState",
    "NakedPocState",
    "PrintState",
    "ProfilerState",
    "RemovalState",
    "SessionState",
]

# Bumped whenever a field below changes meaning; a snapshot of another version is refused.
STATE_VERSION = 2


class SessionState(msgspec.Struct, array_like=True, gc=False):
    sid: str
    start: int
    end: int
    origin_ns: int
    period_ns: int
    vap: dict[int, float]
    periods: dict[int, tuple[int, int]]
    max_vol: float
    max_rows: list[int]
    last_ts: int


class ClosedSessionState(msgspec.Struct, array_like=True, gc=False):
    sid: str
    start: int
    end: int
    vap: dict[int, float]


class NakedPocState(msgspec.Struct, array_like=True, gc=False):
    session_id: str
    price: float
    row: int


class ProfilerState(msgspec.Struct, array_like=True, gc=False):
    current: SessionState | None = None
    closed: list[ClosedSessionState] = msgspec.field(default_factory=list)
    closed_end: int = -1
    naked: list[NakedPocState] = msgspec.field(default_factory=list)
    late: int = 0
    out_of_hours: int = 0
    ignored: int = 0
    # What the histograms count; None in a snapshot from before the field (real volume then).
    size_kind: SizeKind | None = None


class RemovalState(msgspec.Struct, array_like=True, gc=False):
    ts: int
    side: Side
    price: float
    removed: float
    refilled: bool
    anchor_ms: int = 0
    anchor_seq: int = 0


class PrintState(msgspec.Struct, array_like=True, gc=False):
    ts: int
    price: float
    side: Side
    left: float


class BookState(msgspec.Struct, array_like=True, gc=False):
    # Levels as [price, size] pairs in the engine's dict order (msgpack maps want non-float keys).
    bids: list[tuple[float, float]] = msgspec.field(default_factory=list)
    asks: list[tuple[float, float]] = msgspec.field(default_factory=list)
    bid_best: float | None = None
    ask_best: float | None = None
    bid_stale: bool = False
    ask_stale: bool = False
    valid: bool = False
    told: bool = False
    seq: int = 0
    now: int = 0
    last_stats: int | None = None
    pending: list[RemovalState] = msgspec.field(default_factory=list)
    prints: list[PrintState] = msgspec.field(default_factory=list)
    trades_now: int = 0
    book_now: int = 0
    forced: int = 0
    dropped_prints: int = 0


class AnalyticsSnapshot(msgspec.Struct, gc=False):
    """Everything one instrument's analytics fold carries from one message to the next."""

    version: int
    symbol: str
    bars: BarsState
    profile: ProfilerState
    book: BookState
    next_partial_ts: int = 0
    next_profile_ts: int = 0
    next_composite_ts: int = 0
    recent_trade_ids: list[str] = msgspec.field(default_factory=list)
    duplicates: int = 0
    spec: SpecState = msgspec.field(default_factory=SpecState)
