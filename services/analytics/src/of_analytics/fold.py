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
* trades stream ``InstrumentSpec``: the venue's tick replaces the registry's (``venuespec.py``)
  for bars, footprint and profile, once no bar is open. No output.
* book stream: the live book (``BookStats`` on ``bookstats``, throttled by the engine); its own
  ``InstrumentSpec`` copy moves the book window to the venue tick.
* either stream: ``Consumption`` events on ``consumption``, once both streams' event time has
  passed a removal's matching window (``of_analytics.book``). They are *anchored* at the book entry
  that removed the size, so their content and their IDs do not depend on how the stage happened to
  interleave its two input streams: a re-run after a crash repeats them exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import msgspec

from of_analytics import venuespec
from of_analytics.bars import BarBuilder, BarsState
from of_analytics.book import BookEngine, BookOutput, BookParams, Resolved
from of_analytics.profile import ProfileConfig, SessionProfiler
from of_analytics.state import STATE_VERSION, AnalyticsSnapshot
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Gap, Heartbeat, InstrumentSpec, Message, Trade
from ofcommon.stage import Item, Output, StepFailed

__all__ = ["AnalyticsFold", "AnalyticsState"]

_MS: Final = 1_000_000
PARTIAL_NS: Final = 250 * _MS
PROFILE_NS: Final = 1000 * _MS
# The composite spans several sessions and moves slowly; it costs the most to recompute.
COMPOSITE_NS: Final = 5000 * _MS
DEDUP_WINDOW: Final = 4096
_INF: Final = float("inf")

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
    spec: venuespec.SpecState = field(default_factory=venuespec.SpecState)


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
        self._venue_engines: dict[tuple[str, float], _Engines] = {}

    def _engines_of(self, symbol: str, tick: float = 0.0) -> _Engines:
        """The engines of ``symbol`` on the registry's grid, or (``tick`` > 0) the venue's."""
        eng = self._engines.get(symbol)
        if eng is None:
            inst = self._registry.get(symbol)
            eng = _Engines(inst, BarBuilder.for_instrument(inst))
            self._engines[symbol] = eng
        if tick:
            venue = self._venue_engines.get((symbol, tick))
            if venue is None:
                inst = msgspec.structs.replace(eng.instrument, tick_size=tick)
                venue = _Engines(inst, BarBuilder.for_instrument(inst))
                self._venue_engines[(symbol, tick)] = venue
            return venue
        return eng

    # --- Fold -------------------------------------------------------------------------------

    def initial(self, symbol: str) -> AnalyticsState:
        inst = self._engines_of(symbol).instrument
        return AnalyticsState(
            symbol=symbol,
            bars=BarBuilder.initial(),
            profiler=self._profiler(inst),
            book=BookEngine(BookParams(row=inst.tick_size)),
        )

    @staticmethod
    def _profiler(inst: Instrument) -> SessionProfiler:
        # Every registry profile field; the kind follows the trades (tick volume when quote-only).
        return SessionProfiler(inst, ProfileConfig.from_registry(inst.profile), size_kind=None)

    def step(
        self, state: AnalyticsState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        if kind == "trades":
            if isinstance(msg, Trade):
                return self._on_trade(state, msg)
            if isinstance(msg, Heartbeat):
                return self._on_time(state, msg.ts_event)
            if isinstance(msg, Gap):
                self._engines_of(state.symbol, state.spec.tick).bars.on_gap(state.bars, msg)
                return self._book_out(state.book.advance_trades(msg.ts_event))
            if isinstance(msg, InstrumentSpec):
                self._on_spec(state, msg)
            return ()
        if kind == "book":
            if isinstance(msg, InstrumentSpec):
                self._on_book_spec(state, msg)
                return ()
            return self._book_out(state.book.on_book(msg, at))
        return ()

    def step_batch(
        self, state: AnalyticsState, kind: str, items: Sequence[Item]
    ) -> list[Sequence[Output]]:
        """``ofcommon.stage.BatchFold``: ``step`` over each ``(entry_id, message)`` of ``items``,
        one sequence of outputs per item. Trades take ``_on_trade`` directly (no per-message
        dispatch); any other message takes ``step``."""
        done: list[Sequence[Output]] = []
        append = done.append
        on_trade = self._on_trade
        trades = kind == "trades"
        index = 0
        try:
            for index, (at, msg) in enumerate(items):  # noqa: B007 (read by the handler)
                if trades and type(msg) is Trade:
                    append(on_trade(state, msg))
                else:
                    append(self.step(state, kind, msg, at))
        except Exception as err:
            raise StepFailed(index, err, done) from err
        return done

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
            "venue_tick_mismatches": state.spec.mismatches,
            "venue_specs_refused": state.spec.refused,
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
            spec=state.spec,
        )
        return msgspec.msgpack.encode(snap)

    def decode_state(self, data: bytes) -> AnalyticsState:
        snap = msgspec.msgpack.decode(data, type=AnalyticsSnapshot)
        if snap.version != STATE_VERSION:
            raise ValueError(f"analytics state version {snap.version}, expected {STATE_VERSION}")
        state = self.initial(snap.symbol)
        state.spec = snap.spec
        if snap.spec.tick:
            inst = self._engines_of(snap.symbol, snap.spec.tick).instrument
            state.profiler = self._profiler(inst)
        if snap.spec.book_tick:
            state.book = BookEngine(BookParams(row=snap.spec.book_tick))
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
        if not (0.0 < t.size < _INF and -_INF < t.price < _INF):
            _check(t)
        tid = t.trade_id
        if tid and self._dedup:
            recent = state.recent_set
            if tid in recent:
                state.duplicates += 1
                return []
            ids = state.recent_ids
            ids.append(tid)
            recent.add(tid)
            if len(ids) > self._dedup:
                recent.discard(ids.popleft())
        out: Outputs = []
        # The grid changes only while a venue tick is pending (``_grid``); else the engines of
        # the current tick, looked up directly (the fold's hot path).
        found = None if state.spec.pending or state.spec.tick else self._engines.get(state.symbol)
        eng = self._grid(state, t.ts_event, out) if found is None else found
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
        if ts >= state.next_partial_ts or ts >= state.next_profile_ts:
            self._throttled(state, eng, ts, out)
        return out

    def _throttled(self, state: AnalyticsState, eng: _Engines, ts: int, out: Outputs) -> None:
        """The partial bar and the developing profiles due at event time ``ts`` (into ``out``)."""
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

    def _on_time(self, state: AnalyticsState, ts: int) -> Outputs:
        out: Outputs = []
        eng = self._grid(state, ts, out)
        out.extend(("bars", bar) for bar in eng.bars.advance(state.bars, ts))
        out.extend(("profile", u) for u in state.profiler.on_time(ts))
        out.extend(self._book_out(state.book.advance_trades(ts)))
        return out

    def adopt_spec(self, state: AnalyticsState, spec: InstrumentSpec) -> None:
        """Take ``spec``'s tick at once, open bars or not: for a state rebuilt from storage whose
        stored bars were built after the spec (``rebuild.py``)."""
        self._on_spec(state, spec, at_once=True)

    def _on_spec(self, state: AnalyticsState, spec: InstrumentSpec, at_once: bool = False) -> None:
        registry = self._engines_of(state.symbol).instrument
        tick = venuespec.accept(state.spec, registry, spec)
        if tick is None:
            return
        if at_once:  # a rebuilt state has no book-stream spec yet: the trades stream's stands in
            self._set_book_tick(state, tick)
        target = 0.0 if tick == registry.tick_size else tick
        if target == state.spec.tick:
            state.spec.pending = 0.0
            return
        # Bars, footprint and profile switch grids only where no bar is open, so that no bar
        # mixes two row grids: at once on a fresh state (the feeds publish the spec before their
        # trades), else once every open bar has closed (in practice the next UTC day).
        closes = venuespec.open_until(state.bars)
        if closes is None or at_once:
            state.spec.pending = 0.0
            self._switch(state, target)
        else:
            state.spec.pending = tick
            state.spec.pending_from = closes

    def _on_book_spec(self, state: AnalyticsState, spec: InstrumentSpec) -> None:
        """The book stream's own spec: the window follows it at once. Only the book stream's copy
        moves the book, so where the switch falls does not depend on how the stage interleaved
        the two input streams (a re-run after a crash switches at the same book entry)."""
        registry = self._engines_of(state.symbol).instrument
        tick = venuespec.accept(state.spec, registry, spec, count=False)
        if tick is not None:
            self._set_book_tick(state, tick)

    @staticmethod
    def _set_book_tick(state: AnalyticsState, tick: float) -> None:
        # The book keeps no tick-dependent state: its window follows the venue tick at once.
        if state.book.params.row != tick:
            state.book.params = replace(state.book.params, row=tick)
        state.spec.book_tick = tick

    def _grid(self, state: AnalyticsState, ts: int, out: Outputs) -> _Engines:
        """The engines for event time ``ts``: a pending venue tick applies once ``ts`` has passed
        every bar open when it came; those bars close first, on the old grid (into ``out``)."""
        spec = state.spec
        if spec.pending and ts >= spec.pending_from:
            old = self._engines_of(state.symbol, spec.tick)
            out.extend(("bars", bar) for bar in old.bars.advance(state.bars, ts))
            closes = venuespec.open_until(state.bars)
            if closes is not None:  # a bar opened since the spec came still runs: wait for it
                spec.pending_from = closes
                return old
            tick, spec.pending = spec.pending, 0.0
            registry = self._engines_of(state.symbol).instrument
            self._switch(state, 0.0 if tick == registry.tick_size else tick)
        return self._engines_of(state.symbol, spec.tick)

    def _switch(self, state: AnalyticsState, tick: float) -> None:
        """Bars, footprint and profile of ``state`` on the grid of ``tick`` (0: the registry's)."""
        profile = state.profiler.to_state()
        state.spec.tick = tick
        state.profiler = self._profiler(self._engines_of(state.symbol, tick).instrument)
        state.profiler.restore(profile)

    def _book_out(self, outs: list[BookOutput]) -> Outputs:
        out: Outputs = []
        for o in outs:
            if isinstance(o, Resolved):
                if self._consumption:
                    out.append(("consumption", o.consumption, o.anchor))
            else:
                out.append(("bookstats", o))
        return out


def _check(t: Trade) -> None:
    """Refuse a print before anything mutates: a non-finite one folded into a bar poisons every
    later output of that bar (and its database row), and the stage dead-letters a culprit only
    when the step raises. NaN fails every comparison."""
    if not (0.0 < t.size < _INF and -_INF < t.price < _INF):
        raise ValueError(
            f"trade {t.trade_id!r}: price {t.price!r} and size {t.size!r} must be finite,"
            " the size above zero"
        )
