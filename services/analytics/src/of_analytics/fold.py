"""The analytics fold: trades and book of one instrument in, bars, profiles and book stats out.
Pure and deterministic over event time (``ofcommon.stage.Fold``), so a re-run repeats every output.

What each input causes (outputs in this order within one step):

* trades stream ``Trade``: closed bars (``bars``, final), final session / composite profiles of a
  session it closed (``profile``), then at most one partial 1-minute bar per ``partial_ns`` of
  event time (``bars``, non-final), at most one developing session profile per ``profile_ns``
  of event time and with it, at most once per ``composite_ns``, the developing composite
  (``profile``). A trade whose ``trade_id`` was seen among the last
  ``dedup_window`` trades is a feed's retried write and is dropped.
* trades stream ``Heartbeat``: closes bars and sessions that event time has passed.
* trades stream ``Gap``: marks the open (or next) bar as gapped.
* book stream: the live book (``BookStats`` on ``bookstats``, throttled by the engine).
* either stream: ``Consumption`` events on ``consumption``, once both streams' event time has
  passed a removal's matching window (``of_analytics.book``). They are *anchored* at the book entry
  that removed the size, so their content and their IDs do not depend on how the stage happened to
  interleave its two input streams: a re-run after a crash repeats them exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from of_analytics.bars import BarBuilder, BarsState
from of_analytics.book import BookEngine, BookOutput, BookParams, Resolved
from of_analytics.profile import ProfileConfig, SessionProfiler
from of_analytics.state import STATE_VERSION, AnalyticsSnapshot
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Gap, Heartbeat, Message, Trade
from ofcommon.stage import Output

__all__ = ["AnalyticsFold", "AnalyticsState"]

_MS: Final = 1_000_000
PARTIAL_NS: Final = 250 * _MS
PROFILE_NS: Final = 1000 * _MS
# The composite spans several sessions and moves slowly; it costs the most to recompute.
COMPOSITE_NS: Final = 5000 * _MS
DEDUP_WINDOW: Final = 4096

Outputs = list[Output]


@dataclass(slots=True)
class AnalyticsState:
    """One instrument's live state; the engines keep their own (see ``AnalyticsSnapshot``)."""

    symbol: str
    bars: BarsState
    profiler: SessionProfiler
    book: BookEngine
    next_partial_ts: int = 0
    next_profile_ts: int = 0
    next_composite_ts: int = 0
    recent_ids: deque[str] = field(default_factory=deque)
    recent_set: set[str] = field(default_factory=set)
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class _Engines:
    instrument: Instrument
    bars: BarBuilder


class AnalyticsFold:
    """``ofcommon.stage.Fold`` of the analytics stage (stage "analytics", inputs trades + book)."""

    stage: str = "analytics"
    inputs: tuple[str, ...] = ("trades", "book")

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        partial_ns: int = PARTIAL_NS,
        profile_ns: int = PROFILE_NS,
        composite_ns: int = COMPOSITE_NS,
        dedup_window: int = DEDUP_WINDOW,
        consumption: bool = True,
    ) -> None:
        self._registry = registry if registry is not None else load_registry()
        self._partial_ns = partial_ns
        self._profile_ns = profile_ns
        self._composite_ns = composite_ns
        self._dedup = dedup_window
        self._consumption = consumption
        self._engines: dict[str, _Engines] = {}

    def _engines_of(self, symbol: str) -> _Engines:
        eng = self._engines.get(symbol)
        if eng is None:
            inst = self._registry.get(symbol)
            eng = _Engines(inst, BarBuilder.for_instrument(inst))
            self._engines[symbol] = eng
        return eng

    # --- Fold -------------------------------------------------------------------------------

    def initial(self, symbol: str) -> AnalyticsState:
        inst = self._engines_of(symbol).instrument
        config = ProfileConfig.from_registry(inst.profile)
        return AnalyticsState(
            symbol=symbol,
            bars=BarBuilder.initial(),
            # The kind follows the trades: tick volume for a quote-only instrument.
            profiler=SessionProfiler(inst, config, size_kind=None),
            book=BookEngine(BookParams(row=inst.tick_size)),
        )

    def step(
        self, state: AnalyticsState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        if kind == "trades":
            if isinstance(msg, Trade):
                return self._on_trade(state, msg)
            if isinstance(msg, Heartbeat):
                return self._on_time(state, msg.ts_event)
            if isinstance(msg, Gap):
                self._engines_of(state.symbol).bars.on_gap(state.bars, msg)
                return self._book_out(state.book.advance_trades(msg.ts_event))
            return ()
        if kind == "book":
            return self._book_out(state.book.on_book(msg, at))
        return ()

    def tallies(self, state: AnalyticsState) -> dict[str, float]:
        """What the stage exports as ``of_fold_events{name=...}`` (see docs/analytics.md)."""
        bars, profiler, book = state.bars, state.profiler, state.book
        return {
            "late_trades": bars.late_trades,
            "late_volume": bars.late_volume,
            "trade_gaps": bars.gaps,
            "duplicate_trades": state.duplicates,
            "profile_late_trades": profiler.late,
            "profile_out_of_hours_trades": profiler.out_of_hours,
            "consumption_forced": book.forced,
            "consumption_prints_dropped": book.dropped_prints,
        }

    def encode_state(self, state: AnalyticsState) -> bytes:
        snap = AnalyticsSnapshot(
            version=STATE_VERSION,
            symbol=state.symbol,
            bars=state.bars,
            profile=state.profiler.to_state(),
            book=state.book.to_state(),
            next_partial_ts=state.next_partial_ts,
            next_profile_ts=state.next_profile_ts,
            next_composite_ts=state.next_composite_ts,
            recent_trade_ids=list(state.recent_ids),
            duplicates=state.duplicates,
        )
        return msgspec.msgpack.encode(snap)

    def decode_state(self, data: bytes) -> AnalyticsState:
        snap = msgspec.msgpack.decode(data, type=AnalyticsSnapshot)
        if snap.version != STATE_VERSION:
            raise ValueError(f"analytics state version {snap.version}, expected {STATE_VERSION}")
        state = self.initial(snap.symbol)
        state.bars = snap.bars
        state.profiler.restore(snap.profile)
        state.book.restore(snap.book)
        state.next_partial_ts = snap.next_partial_ts
        state.next_profile_ts = snap.next_profile_ts
        state.next_composite_ts = snap.next_composite_ts
        state.recent_ids = deque(snap.recent_trade_ids)
        state.recent_set = set(snap.recent_trade_ids)
        state.duplicates = snap.duplicates
        return state

    # --- internals --------------------------------------------------------------------------

    def _on_trade(self, state: AnalyticsState, t: Trade) -> Outputs:
        if t.trade_id and self._dedup:
            if t.trade_id in state.recent_set:
                state.duplicates += 1
                return []
            state.recent_ids.append(t.trade_id)
            state.recent_set.add(t.trade_id)
            if len(state.recent_ids) > self._dedup:
                state.recent_set.discard(state.recent_ids.popleft())
        eng = self._engines_of(state.symbol)
        out: Outputs = []
        # Most trades cause no closed bar, no closed session and no consumption: test before
        # building generators (this is the fold's hot path).
        closed = eng.bars.on_trade(state.bars, t)
        if closed:
            out.extend(("bars", bar) for bar in closed)
        finals = state.profiler.on_trade(t)
        if finals:
            out.extend(("profile", u) for u in finals)
        resolved = state.book.on_trade(t)
        if resolved:
            out.extend(self._book_out(resolved))
        ts = t.ts_event
        if ts >= state.next_partial_ts:
            bar = eng.bars.partial(state.bars)
            if bar is not None:
                out.append(("bars", bar))
                state.next_partial_ts = ts + self._partial_ns
        if ts >= state.next_profile_ts:
            composite = ts >= state.next_composite_ts
            updates = state.profiler.developing(composite=composite)
            if updates:
                out.extend(("profile", u) for u in updates)
                state.next_profile_ts = ts + self._profile_ns
                if composite:
                    state.next_composite_ts = ts + self._composite_ns
        return out

    def _on_time(self, state: AnalyticsState, ts: int) -> Outputs:
        eng = self._engines_of(state.symbol)
        out: Outputs = []
        out.extend(("bars", bar) for bar in eng.bars.advance(state.bars, ts))
        out.extend(("profile", u) for u in state.profiler.on_time(ts))
        out.extend(self._book_out(state.book.advance_trades(ts)))
        return out

    def _book_out(self, outs: list[BookOutput]) -> Outputs:
        out: Outputs = []
        for o in outs:
            if isinstance(o, Resolved):
                if self._consumption:
                    out.append(("consumption", o.consumption, o.anchor))
            else:
                out.append(("bookstats", o))
        return out
