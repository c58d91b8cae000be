"""The patterns fold: one instrument's analytics outputs in, ``PatternSignal``s out.
Pure and deterministic over event time (``ofcommon.stage.Fold``): a re-run repeats every signal.

Inputs and what they cause:

* ``bars``: the first final bar of ``timeframe`` per open time runs the bar detectors
  (absorption methods a/b, initiative, exhaustion, divergence), in that order; partial bars,
  other timeframes and amendments of a bar already judged are ignored. A gapped bar (trades may
  be missing) enters the history but is not judged; a ``Gap`` on the bars stream (bars missing)
  empties the history, so no pattern spans it.
* ``bookstats``: thin levels per side (kept when they change), for the sweep's confirmation.
* ``consumption``: the sweep and absorption's book method (c).

The stage folds its three inputs in entry-ID order, but the streams' read positions can drift
apart (a restart drains each stream's pending entries separately; an anchored consumption event
may sort before entries already read). So that a re-run repeats every signal whatever the
interleaving, a consumption event waits (``pending``) until both other streams' event time has
passed what it needs — the book statistics up to ``found.SETTLE_NS`` before it and the bars
closed one bar period before it — and is judged with exactly those; and every signal is
*anchored* at the entry that caused it (a bar, or the consumption event), so its ID does not
depend on which input released it. Beyond ``MAX_PENDING`` waiting events the oldest is judged
with what is there (``forced_consumption`` tally). Signals are published in anchor order: one is
held until every input stream has been folded past its anchor (and no waiting consumption event
sorts before it), so the order, and with it every entry ID, is the canonical one. A stream that
never delivered anything (an instrument without a book) is not waited for; a signal whose decision
time is more than ``hold_ns`` of event time behind the newest input goes out anyway (a stream that
stopped).

Warm-up: nothing fires before ``warmup`` closed bars were seen (``auto`` has its statistics then;
``fixed`` needs the history too). The signal's ``ts_event`` is its decision time (``found.Found``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

import msgspec

from of_patterns import absorption, divergence, exhaustion, initiative, sweep
from of_patterns.found import SETTLE_NS, Found, to_signal
from of_patterns.history import BarPoint, point
from of_patterns.settings import PatternsSettings, ThresholdMode
from of_patterns.thresholds import Limits, Rolling, Scale, limits
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Bar, BookStats, Consumption, Gap, Message, PatternSignal
from ofcommon.stage import Output

STATE_VERSION: Final = 1
OUTPUT: Final = "patterns"
PATTERNS: Final = ("absorption", "initiative", "sweep", "exhaustion", "divergence")
BOOKS_KEPT: Final = 4096  # thin-level changes
SCALES_KEPT: Final = 64  # closed bars
MAX_PENDING: Final = 20_000  # consumption events waiting for the other streams
HOLD_NS: Final = 1800 * SETTLE_NS
TIMEFRAME_NS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}


class BookPoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    ts: int
    thin_asks: int
    thin_bids: int


class Held(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A signal waiting for its turn, anchored at entry (ms, seq)."""

    ms: int
    seq: int
    signal: PatternSignal


class Waiting(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A consumption event and its entry ID, waiting for the other streams' event time."""

    ms: int
    seq: int
    event: Consumption


class PatternsState(msgspec.Struct):
    version: int
    symbol: str
    volumes: Rolling
    history: list[BarPoint] = msgspec.field(default_factory=list)
    scales: list[Scale] = msgspec.field(default_factory=list)
    books: list[BookPoint] = msgspec.field(default_factory=list)
    pending: list[Waiting] = msgspec.field(default_factory=list)
    held: list[Held] = msgspec.field(default_factory=list)
    folded: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)  # last entry per input
    newest: int = 0  # the newest event time of any input
    book_time: int = 0  # event time of the last book statistics
    bar_time: int = 0  # close of the last final bar of the timeframe
    last_open_ts: int = 0
    forced: int = 0
    bar_gaps: int = 0
    absorption: absorption.AbsorptionState = msgspec.field(
        default_factory=absorption.AbsorptionState
    )
    divergence: divergence.DivergenceState = msgspec.field(
        default_factory=divergence.DivergenceState
    )
    sweep: sweep.SweepState = msgspec.field(default_factory=sweep.SweepState)
    signals: dict[str, int] = msgspec.field(default_factory=dict)
    amended_bars: int = 0
    gapped_bars: int = 0


class PatternsFold:
    """``ofcommon.stage.Fold`` of the patterns stage."""

    stage: str = "patterns"
    inputs: tuple[str, ...] = ("bars", "bookstats", "consumption")

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        mode: ThresholdMode = "auto",
        timeframe: str = "1m",
        window: int = 60,
        warmup: int = 20,
        hold_ns: int | None = HOLD_NS,
    ) -> None:
        """``hold_ns`` None publishes every signal at once, unordered (for tests of content)."""
        self._registry = registry if registry is not None else load_registry()
        self.mode = mode
        self.timeframe = timeframe
        self._window = window
        self.warmup = warmup
        self._hold_ns = hold_ns
        self._instruments: dict[str, Instrument] = {}

    @classmethod
    def from_settings(cls, registry: Registry, s: PatternsSettings) -> PatternsFold:
        return cls(
            registry,
            mode=s.patterns_threshold_mode,
            timeframe=s.patterns_timeframe,
            window=s.patterns_auto_window_bars,
            warmup=s.patterns_warmup_bars,
        )

    def _inst(self, symbol: str) -> Instrument:
        inst = self._instruments.get(symbol)
        if inst is None:
            inst = self._instruments[symbol] = self._registry.get(symbol)
        return inst

    def _keep(self, inst: Instrument) -> int:
        return max(
            initiative.AVERAGE_BARS,
            inst.divergence.lookback_bars + 1,
            inst.exhaustion.min_bars_declining + 2 + exhaustion.LOOKBACK,
        )

    # --- Fold -------------------------------------------------------------------------------

    def initial(self, symbol: str) -> PatternsState:
        self._inst(symbol)
        return PatternsState(STATE_VERSION, symbol, Rolling(self._window))

    def step(
        self, state: PatternsState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        if kind not in self.inputs:
            return ()
        state.folded[kind] = (at.ms, at.seq)
        if kind == "bars":
            if isinstance(msg, Bar):
                if msg.final:
                    state.newest = max(state.newest, msg.close_ts)
                self._hold(state, self._on_bar(state, msg, at))
            elif isinstance(msg, Gap):
                # Bars may be missing (the stream was trimmed before analytics read its input):
                # no pattern may span the hole.
                state.history.clear()
                state.absorption.attempts.clear()
                state.bar_gaps += 1
        elif kind == "consumption":
            if isinstance(msg, Consumption):
                state.newest = max(state.newest, msg.ts_event)
                state.pending.append(Waiting(at.ms, at.seq, msg))
        elif isinstance(msg, BookStats):
            state.newest = max(state.newest, msg.ts_event)
            self._on_book(state, msg)
        self._hold(state, self._release(state))
        return self._publish(state)

    def _hold(self, state: PatternsState, signals: list[tuple[EntryId, PatternSignal]]) -> None:
        for anchor, sig in signals:
            held = Held(anchor.ms, anchor.seq, sig)
            keys = [(h.ms, h.seq) for h in state.held]
            state.held.insert(bisect.bisect_right(keys, (anchor.ms, anchor.seq)), held)

    def _publish(self, state: PatternsState) -> list[Output]:
        """The held signals whose turn has come, in anchor order."""
        out: list[Output] = []
        # A stream that never delivered anything (an instrument without a book) is not waited for.
        passed = min(state.folded.values()) if state.folded else None
        while state.held:
            h = state.held[0]
            key = (h.ms, h.seq)
            waiting = state.pending and (state.pending[0].ms, state.pending[0].seq) < key
            due = passed is not None and key <= passed and not waiting
            late = self._hold_ns is None or h.signal.ts_event <= state.newest - self._hold_ns
            if not due and not late:
                break
            state.held.pop(0)
            out.append((OUTPUT, h.signal, EntryId(h.ms, h.seq)))
        return out

    def tallies(self, state: PatternsState) -> dict[str, float]:
        out: dict[str, float] = {f"signals_{p}": state.signals.get(p, 0) for p in PATTERNS}
        out["amended_bars_ignored"] = state.amended_bars
        out["gapped_bars_not_judged"] = state.gapped_bars
        out["forced_consumption"] = state.forced
        out["bar_gaps"] = state.bar_gaps
        out["pending_consumption"] = len(state.pending)
        out["held_signals"] = len(state.held)
        return out

    def encode_state(self, state: PatternsState) -> bytes:
        return msgspec.msgpack.encode(state)

    def decode_state(self, data: bytes) -> PatternsState:
        state = msgspec.msgpack.decode(data, type=PatternsState)
        if state.version != STATE_VERSION:
            raise ValueError(f"patterns state version {state.version}, expected {STATE_VERSION}")
        return state

    # --- internals --------------------------------------------------------------------------

    def _bar_limits(self, state: PatternsState, inst: Instrument) -> Limits:
        v = state.volumes
        return limits(inst, self.mode, len(v.values), v.median(), self.warmup)

    def _event_limits(self, state: PatternsState, inst: Instrument, ts: int) -> Limits | None:
        cut = ts - TIMEFRAME_NS[self.timeframe] * SETTLE_NS
        scale = next((s for s in reversed(state.scales) if s.close_ts <= cut), None)
        if scale is None:
            return None
        return limits(inst, self.mode, scale.bars, scale.median, self.warmup)

    def _emit(
        self, state: PatternsState, found: list[Found | None], anchor: EntryId
    ) -> list[tuple[EntryId, PatternSignal]]:
        out = []
        for f in found:
            if f is not None:
                state.signals[f.pattern] = state.signals.get(f.pattern, 0) + 1
                out.append((anchor, to_signal(state.symbol, self.timeframe, f)))
        return out

    def _on_bar(
        self, state: PatternsState, bar: Bar, at: EntryId
    ) -> list[tuple[EntryId, PatternSignal]]:
        if bar.timeframe != self.timeframe or not bar.final:
            return []
        if bar.open_ts <= state.last_open_ts:
            state.amended_bars += 1
            return []
        state.last_open_ts = bar.open_ts
        state.bar_time = max(state.bar_time, bar.close_ts)
        inst = self._inst(state.symbol)
        lim = self._bar_limits(state, inst)
        judge = lim.ready and not bar.gapped and bar.volume > 0
        if bar.gapped:
            state.gapped_bars += 1
        found: list[Found | None] = []
        if judge:
            found.append(absorption.on_bar(state.absorption, bar, inst, lim))
            found.append(initiative.on_bar(state.history, bar, inst, lim))
        state.history.append(point(bar))
        del state.history[: -self._keep(inst)]
        if judge:
            found.append(exhaustion.on_bar(state.history, inst, lim))
            found.append(divergence.on_bar(state.divergence, state.history, inst, lim))
        state.volumes.add(bar.volume)
        v = state.volumes
        state.scales.append(Scale(bar.close_ts, len(v.values), v.median()))
        del state.scales[:-SCALES_KEPT]
        return self._emit(state, found, at)

    def _on_book(self, state: PatternsState, b: BookStats) -> None:
        state.book_time = max(state.book_time, b.ts_event)
        asks, bids = sweep.thin_sides(b)
        last = state.books[-1] if state.books else None
        if last is None or (last.thin_asks, last.thin_bids) != (asks, bids):
            state.books.append(BookPoint(b.ts_event, asks, bids))
            del state.books[:-BOOKS_KEPT]

    def _release(self, state: PatternsState) -> list[tuple[EntryId, PatternSignal]]:
        out = []
        period = TIMEFRAME_NS[self.timeframe] * SETTLE_NS
        while state.pending:
            w = state.pending[0]
            ts = w.event.ts_event
            ready = state.book_time > ts - SETTLE_NS and state.bar_time > ts - period
            if not ready and len(state.pending) <= MAX_PENDING:
                break
            state.forced += not ready
            state.pending.pop(0)
            out += self._on_consumption(state, w.event, EntryId(w.ms, w.seq))
        return out

    def _on_consumption(
        self, state: PatternsState, c: Consumption, at: EntryId
    ) -> list[tuple[EntryId, PatternSignal]]:
        inst = self._inst(state.symbol)
        lim = self._event_limits(state, inst, c.ts_event)
        if lim is None or not lim.ready:
            return []
        cut = c.ts_event - SETTLE_NS
        book = next((b for b in reversed(state.books) if b.ts <= cut), None)
        thin = (0, 0) if book is None else (book.thin_asks, book.thin_bids)
        return self._emit(
            state,
            [
                sweep.on_consumption(state.sweep, c, thin, inst, lim),
                absorption.on_consumption(state.absorption, c, inst, lim),
            ],
            at,
        )
