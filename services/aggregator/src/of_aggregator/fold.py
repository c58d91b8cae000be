"""The aggregator fold: bars, profiles and patterns of one instrument in; bias, trade events and
the strategy status out. Pure and deterministic over event time (``ofcommon.stage.Fold``).

* ``profile``: a final *session* profile (never a developing one, never a composite) is framed
  with the sessions before it: ``Bias`` on ``bias`` and a ``bias`` TradeEvent.
* ``bars``: a final 1-minute bar of the instrument's session drives the machine (stops, targets,
  timeouts, watches); a bar outside the session only advances event time.
* ``patterns``: a ``PatternSignal`` routed by the machine's phase, and passed on as a
  ``consumed`` output for the journal (``hook_only``: the stage never publishes it).

Across streams the stage's interleaving depends on timing, so the fold orders by event time
itself: a pattern or profile is held until the bars show that no earlier bar is still to come
(the latest bar closes at or before it and the next cannot close before it), then processed
with every output anchored at its own entry ID. After each processed message a
``StrategyStatus`` on ``status`` when the status changed. The outputs are therefore the same for
any interleaving of the three streams, so a re-run after a crash repeats them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from of_aggregator.framing import Frame, FramingParams, SessionProfile, frame
from of_aggregator.machine import BarView, MachineParams, MachineState, TradeMachine
from of_aggregator.params import AggregatorParams, overridden
from of_aggregator.status import status
from of_analytics.profile import ProfileConfig
from ofcommon import entry_ids
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Bar, Bias, KeyLevel, Message, PatternSignal, ProfileUpdate
from ofcommon.sessions import session_bounds
from ofcommon.stage import Output, StructStateFold

STATE_VERSION: Final = 1
BAR_TIMEFRAME: Final = "1m"
HISTORY: Final = 5  # sessions kept for framing (merge_days and the prior session need fewer)
BAR_NS: Final = 60_000_000_000
MAX_HELD: Final = 10_000
# Held messages at one event time: a session's framing before a pattern of the same instant.
_RANK: Final = {"profile": 0, "patterns": 1}


class Held(msgspec.Struct, frozen=True):
    """A pattern or final session profile waiting for the bars to pass its event time."""

    ts: int
    rank: int
    at: str  # its entry ID: the anchor of its outputs
    msg: PatternSignal | ProfileUpdate


class AggregatorState(msgspec.Struct):
    symbol: str
    version: int = STATE_VERSION
    machine: MachineState = msgspec.field(default_factory=MachineState)
    history: list[SessionProfile] = msgspec.field(default_factory=list)
    # The two latest closed bars' (close_ts, close): a closed session's last traded price.
    closes: list[tuple[int, float]] = msgspec.field(default_factory=list)
    last_status: list[str] = msgspec.field(default_factory=list)
    held: list[Held] = msgspec.field(default_factory=list)
    ignored: int = 0


def bias_message(f: Frame) -> Bias:
    merged = f.merged or (0.0, 0.0)
    return Bias(
        session_id=f.session_id,
        ts_event=f.ts_event,
        bias=f.direction,
        shape=f.shape,
        levels=[KeyLevel(lv.kind, lv.price, lv.strength, True, lv.direction) for lv in f.levels],
        confidence=f.confidence,
        poc=f.poc,
        vah=f.vah,
        val=f.val,
        warnings=list(f.warnings),
        merged_val=merged[0],
        merged_vah=merged[1],
    )


class AggregatorFold(StructStateFold[AggregatorState]):
    """``ofcommon.stage.Fold`` of the aggregator stage."""

    stage: str = "aggregator"
    inputs: tuple[str, ...] = ("profile", "bars", "patterns")
    # Each pattern as it is consumed, for the journal's hook only (never published).
    hook_only: frozenset[str] = frozenset({"consumed"})
    state_type = AggregatorState

    def __init__(
        self,
        registry: Registry | None = None,
        framing: FramingParams | None = None,
        machine: MachineParams | None = None,
        *,
        params: AggregatorParams | None = None,
    ) -> None:
        """``params``: the service-wide rules (``framing`` / ``machine`` replace their part);
        each instrument's registry ``aggregator`` table overrides them for that instrument."""
        self._registry = registry if registry is not None else load_registry()
        base = params or AggregatorParams()
        self._params = AggregatorParams(
            framing=framing or base.framing, machine=machine or base.machine
        )
        self._machines: dict[str, tuple[Instrument, TradeMachine, FramingParams]] = {}

    def params_of(self, symbol: str) -> AggregatorParams:
        """The rules of ``symbol``: the service-wide ones with its registry overrides."""
        inst = self._registry.get(symbol)
        where = f"[instruments.{symbol}.aggregator]"
        return overridden(self._params, inst.aggregator, where)

    def check(self) -> None:
        """Refuse (``ValueError``) a registry whose overrides do not fit (at start, not later)."""
        for inst in self._registry:
            self.params_of(inst.symbol)

    def _of(self, symbol: str) -> tuple[Instrument, TradeMachine, FramingParams]:
        got = self._machines.get(symbol)
        if got is None:
            inst = self._registry.get(symbol)
            p = self.params_of(symbol)
            machine = TradeMachine(symbol, inst.tick_size, inst.row_size, p.machine)
            got = (inst, machine, p.framing)
            self._machines[symbol] = got
        return got

    def initial(self, symbol: str) -> AggregatorState:
        return AggregatorState(symbol=symbol)

    def decode_state(self, data: bytes) -> AggregatorState:
        state = super().decode_state(data)
        if state.version != STATE_VERSION:
            raise ValueError(f"aggregator state version {state.version}, expected {STATE_VERSION}")
        return state

    def tallies(self, state: AggregatorState) -> dict[str, float]:
        return {
            "aggregator_trades_closed": float(state.machine.trades_closed),
            "aggregator_ignored": float(state.ignored),
        }

    def step(
        self, state: AggregatorState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        # A message the machine cannot trust is refused before it changes anything: the stage
        # dead-letters the entry with this reason ("fold-error: ...") and goes on.
        problem = _invalid(msg)
        if problem:
            raise ValueError(f"{type(msg).__name__} refused: {problem}")
        out: list[Output] = []
        if kind == "bars" and isinstance(msg, Bar):
            if not (msg.final and msg.timeframe == BAR_TIMEFRAME):
                return []
            out.extend(self._release(state, msg.close_ts))
            out.extend(self._bar(state, msg, at))
            out.extend(self._release(state, msg.close_ts + BAR_NS))
        elif kind in _RANK and isinstance(msg, PatternSignal | ProfileUpdate):
            if isinstance(msg, ProfileUpdate) and not (msg.final and msg.scope == "session"):
                return []
            held = Held(msg.ts_event, _RANK[kind], str(at), msg)
            state.held = sorted([*state.held, held], key=lambda h: (h.ts, h.rank, h.at))
            bar = state.machine.last_bar
            if bar is not None:
                out.extend(self._release(state, bar.close_ts + BAR_NS))
            if len(state.held) > MAX_HELD:
                # No bars for that long (a stalled bars stream): run the oldest late rather
                # than hold without bound.
                out.extend(self._release(state, state.held[0].ts + 1))
        else:
            state.ignored += 1
        return out

    def _release(self, state: AggregatorState, before: int) -> list[Output]:
        """Process the held messages with event time before ``before``, in event-time order."""
        out: list[Output] = []
        while state.held and state.held[0].ts < before:
            h = state.held.pop(0)
            anchor = entry_ids.parse(h.at)
            if isinstance(h.msg, ProfileUpdate):
                out.extend(self._profile(state, h.msg, anchor))
            else:
                out.extend(self._pattern(state, h.msg, anchor))
        return out

    def _profile(self, state: AggregatorState, u: ProfileUpdate, at: EntryId) -> list[Output]:
        inst, m, framing = self._of(state.symbol)
        f = self._frame(state, inst, framing, u)
        out: list[Output] = [("bias", bias_message(f), at)]
        out.extend(("tradeevents", e, at) for e in m.on_frame(state.machine, f))
        return out + self._status(state, u.ts_event, at)

    def _pattern(self, state: AggregatorState, p: PatternSignal, at: EntryId) -> list[Output]:
        _, m, _ = self._of(state.symbol)
        out: list[Output] = [("consumed", p, at)]
        out.extend(("tradeevents", e, at) for e in m.on_pattern(state.machine, p))
        return out + self._status(state, p.ts_event, at)

    def _bar(self, state: AggregatorState, bar: Bar, at: EntryId) -> list[Output]:
        inst, m, _ = self._of(state.symbol)
        state.closes = [*state.closes[-1:], (bar.close_ts, bar.close)]
        start, end = session_bounds(inst.session_spec, bar.open_ts)
        if start <= bar.open_ts < end:
            view = BarView(bar.open_ts, bar.close_ts, bar.open, bar.high, bar.low, bar.close, end)
            events = m.on_bar(state.machine, view)
        else:
            events = m.on_time(state.machine, bar.close_ts)
        out: list[Output] = [("tradeevents", e, at) for e in events]
        return out + self._status(state, bar.close_ts, at)

    def _status(self, state: AggregatorState, ts: int, at: EntryId) -> list[Output]:
        _, m, _ = self._of(state.symbol)
        snap = status(state.machine, m.reach, ts)
        key = [snap.status, str(snap.priority), *snap.steps, snap.trade_id]
        if key == state.last_status:
            return []
        state.last_status = key
        return [("status", snap, at)]

    def _frame(
        self, state: AggregatorState, inst: Instrument, framing: FramingParams, u: ProfileUpdate
    ) -> Frame:
        last = next((c for ts, c in reversed(state.closes) if ts <= u.session_end), 0.0)
        session = SessionProfile.from_update(u, last)
        history = [h for h in state.history if h.session_id != u.session_id] + [session]
        state.history = history[-HISTORY:]
        return self.reframe(state.symbol, state.history)

    def reframe(self, symbol: str, history: Sequence[SessionProfile]) -> Frame:
        """The frame of ``history[-1]`` (not empty) with the instrument's rules."""
        inst, _, framing = self._of(symbol)
        row_price = inst.tick_size * inst.ticks_per_row
        f = frame(history, framing, row_price, ProfileConfig.from_registry(inst.profile))
        assert f is not None  # the history is not empty
        return f

    def machine_of(self, symbol: str) -> TradeMachine:
        return self._of(symbol)[1]

    def instrument(self, symbol: str) -> Instrument:
        return self._of(symbol)[0]

    def status_key(self, state: AggregatorState, ts: int) -> list[str]:
        """What ``last_status`` holds after a status at ``ts`` (the status is published when
        it changes)."""
        snap = status(state.machine, self.machine_of(state.symbol).reach, ts)
        return [snap.status, str(snap.priority), *snap.steps, snap.trade_id]


def _invalid(msg: Message) -> str:
    """Why ``msg`` cannot be folded ("" when it can)."""
    if isinstance(msg, Bar):
        prices = (msg.open, msg.high, msg.low, msg.close)
        if not all(math.isfinite(p) for p in prices):
            return f"non-finite price in {prices}"
        if not msg.low <= min(msg.open, msg.close) <= max(msg.open, msg.close) <= msg.high:
            return f"open/close outside low..high {prices}"
        if msg.close_ts <= msg.open_ts:
            return f"close_ts {msg.close_ts} not after open_ts {msg.open_ts}"
    elif isinstance(msg, PatternSignal):
        if not (math.isfinite(msg.price) and math.isfinite(msg.strength)):
            return f"non-finite price {msg.price} or strength {msg.strength}"
    elif isinstance(msg, ProfileUpdate) and msg.final and msg.scope == "session":
        levels = (msg.val, msg.poc, msg.vah)
        if not all(math.isfinite(p) for p in levels) or not msg.val <= msg.vah:
            return f"value area val/poc/vah {levels} not finite and ordered"
    return ""
