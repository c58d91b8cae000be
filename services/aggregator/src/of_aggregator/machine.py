"""The per-instrument trade state machine: frames, closed bars and patterns in, TradeEvents out.

A pure fold on event time (docs/aggregator.md has the phases, their exits and every reason).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from of_aggregator.framing import Frame, QualifiedLevel
from of_aggregator.scoring import Risk, ScoreWeights, composite, grade, rejection, sl_tp
from ofcommon.messages import Direction, PatternSignal, TradeEvent, TradeEventKind

_NS_PER_S = 1_000_000_000


class Phase(StrEnum):
    """The README's six phases. ABSORPTION_DETECTED lasts one step: an absorption at the
    watched level is scored there and either enters or is rejected back to WATCHING."""

    IDLE = "idle"
    WATCHING = "watching"
    ABSORPTION_DETECTED = "absorption_detected"
    POSITION_OPEN = "position_open"
    BREAK_EVEN = "break_even"
    TRAILING = "trailing"


OPEN_PHASES = (Phase.POSITION_OPEN, Phase.BREAK_EVEN, Phase.TRAILING)


COOLDOWN_KINDS = ("watch", "absorption", "sweep", "exhaustion", "divergence")


def _default_cooldowns() -> dict[str, float]:
    return {
        "watch": 300.0,
        "absorption": 30.0,
        "sweep": 60.0,
        "exhaustion": 30.0,
        "divergence": 30.0,
    }


class MachineParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The trade machine's rules (docs/aggregator.md).

    ``watch_rows``: a bar within this many profile rows (the instrument's ``row_size``) of a
    level watches it, and an absorption within it is "at the level"; ``min_level_strength``:
    weaker levels are never watched;
    ``min_score``: the composite an entry needs; ``counter_bias``: also trade against the
    bias (a NEUTRAL bias allows both sides); ``watch_timeout_s``: a watch with no entry ends;
    ``max_hold_s``: a trade ends at the first bar close past it (the session end comes first
    when earlier); ``exit_strength``: an opposite exhaustion/divergence this strong closes
    the trade, a weaker one warns; ``support_window_s``: same-direction patterns this recent
    add to the entry's score; ``cooldown_s``: per signal kind (and ``watch`` for re-watching a
    level), the event time after one acts before the same kind acts again (exits never wait).
    """

    watch_rows: float = 1.0
    min_level_strength: float = 50.0
    min_score: float = 40.0
    counter_bias: bool = False
    watch_timeout_s: float = 1800.0
    max_hold_s: float = 14_400.0
    exit_strength: float = 70.0
    support_window_s: float = 300.0
    cooldown_s: dict[str, float] = msgspec.field(default_factory=_default_cooldowns)
    weights: ScoreWeights = msgspec.field(default_factory=ScoreWeights)
    risk: Risk = msgspec.field(default_factory=Risk)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.cooldown_s) - set(COOLDOWN_KINDS))
        if unknown:
            raise ValueError(
                f"cooldown_s: unknown kind {unknown[0]!r} (known: {', '.join(COOLDOWN_KINDS)})"
            )
        if any(not v >= 0 for v in self.cooldown_s.values()):
            raise ValueError(f"cooldown_s: seconds must be >= 0, got {self.cooldown_s}")


class BarView(msgspec.Struct, frozen=True):
    """A closed bar as the machine needs it; ``session_end``: the close of its session."""

    open_ts: int
    close_ts: int
    open: float
    high: float
    low: float
    close: float
    session_end: int


class Watch(msgspec.Struct):
    trade_id: str
    level: QualifiedLevel
    since: int
    expires: int
    session_end: int


class OpenTrade(msgspec.Struct):
    trade_id: str
    direction: Direction
    entry_ts: int
    entry: float
    stop: float
    initial_stop: float
    target: float
    level: QualifiedLevel
    score: float
    grade: str
    signals: list[str]
    session_end: int
    deadline: int
    best: float  # the most favourable / adverse traded price since entry
    worst: float


class Recent(msgspec.Struct, frozen=True):
    signal_id: str
    ts: int
    pattern: str
    direction: Direction
    strength: float


class MachineState(msgspec.Struct):
    phase: Phase = Phase.IDLE
    frame: Frame | None = None
    watch: Watch | None = None
    trade: OpenTrade | None = None
    last_bar: BarView | None = None
    cooldown_until: dict[str, int] = msgspec.field(default_factory=dict)
    recent: list[Recent] = msgspec.field(default_factory=list)
    seq: int = 0  # events emitted: the per-instrument part of deterministic ids
    trades_closed: int = 0


class TradeMachine:
    """The fold; ``tick`` is the instrument's price increment (P&L and excursions in ticks),
    ``row`` its profile row height (the watch distance is ``watch_rows`` rows)."""

    def __init__(
        self, symbol: str, tick: float, row: float, params: MachineParams | None = None
    ) -> None:
        self.symbol = symbol
        self.tick = tick
        self.p = params or MachineParams()
        self.reach = self.p.watch_rows * row

    # -- inputs --

    def on_frame(self, st: MachineState, frame: Frame) -> list[TradeEvent]:
        """A new framing (a session closed): what ended with the session ends first, then a
        watch of a level no longer framed ends."""
        out = self.on_time(st, frame.ts_event)
        st.frame = frame
        out.append(self._bias_event(st, frame))
        w = st.watch
        if w is not None and not any(_same(w.level, lv) for lv in frame.levels):
            out.append(self._cancel(st, frame.ts_event, "levels_changed"))
        return out

    def on_time(self, st: MachineState, ts: int) -> list[TradeEvent]:
        """Event time reached ``ts`` (a bar's open or close, or a heartbeat): a trade past its
        session end or its holding time exits at the last traded price; a watch past its
        session end or its timeout ends."""
        out: list[TradeEvent] = []
        t = st.trade
        last = st.last_bar
        if t is not None and ts >= min(t.session_end, t.deadline):
            price = last.close if last is not None else t.entry
            if ts >= t.session_end:
                out.append(self._exit(st, t.session_end, price, "session_end"))
            else:
                out.append(self._exit(st, ts, price, "max_hold"))
        w = st.watch
        if w is not None and ts >= min(w.session_end, w.expires):
            end = ts >= w.session_end
            at = w.session_end if end else w.expires
            out.append(self._cancel(st, at, "session_end" if end else "watch_expired"))
            st.cooldown_until[watch_key(w.level)] = at + self._cool("watch")
        return out

    def on_bar(self, st: MachineState, bar: BarView) -> list[TradeEvent]:
        """A closed bar: session end and timeouts, stops and targets touched, then watches."""
        out = self.on_time(st, bar.open_ts)
        t = st.trade
        if t is not None:
            out.extend(self._manage(st, t, bar))
        st.last_bar = bar
        out.extend(self.on_time(st, bar.close_ts))
        if st.phase is Phase.IDLE:
            out.extend(self._maybe_watch(st, bar))
        return out

    def on_pattern(self, st: MachineState, sig: PatternSignal) -> list[TradeEvent]:
        """A detected pattern, routed by phase (docs/aggregator.md "Routing")."""
        cutoff = sig.ts_event - int(self.p.support_window_s * _NS_PER_S)
        st.recent = [r for r in st.recent if r.ts >= cutoff]
        st.recent.append(
            Recent(sig.signal_id, sig.ts_event, sig.pattern, sig.direction, sig.strength)
        )
        # Session ends and timeouts up to the pattern's time come first.
        out = self.on_time(st, sig.ts_event)
        return out + self._route(st, sig)

    def _route(self, st: MachineState, sig: PatternSignal) -> list[TradeEvent]:
        bar = st.last_bar
        if bar is None:
            return []
        t = st.trade
        if t is not None:
            if sig.pattern in ("exhaustion", "divergence") and sig.direction == -t.direction:
                return self._exit_signal(st, t, sig, bar)
            if sig.pattern == "initiative" and sig.direction == t.direction:
                return self._initiative(st, t, sig, bar)
            return []
        w = st.watch
        if w is None or not self._cooled(st, sig.pattern, sig.ts_event):
            return []
        if sig.pattern == "sweep":
            self._cool_start(st, "sweep", sig.ts_event)
            return [
                self._event(
                    st, w.trade_id, sig.ts_event, "alert", sig.direction, bar.close, reason="sweep"
                )
            ]
        if (
            sig.pattern == "absorption"
            and sig.direction == w.level.direction
            and self._near(sig.price, w.level.price)
        ):
            return self._absorption(st, w, sig, bar)
        return []

    # -- watching --

    def _allowed(self, st: MachineState, direction: Direction) -> bool:
        f = st.frame
        if f is None:
            return False
        return self.p.counter_bias or f.direction in (Direction.NEUTRAL, direction)

    def _maybe_watch(self, st: MachineState, bar: BarView) -> list[TradeEvent]:
        f = st.frame
        if f is None:
            return []
        reach = self.reach
        near = [
            lv
            for lv in f.levels
            if lv.strength >= self.p.min_level_strength
            and bar.low - reach <= lv.price <= bar.high + reach
            and self._allowed(st, lv.direction)
            and st.cooldown_until.get(watch_key(lv), 0) <= bar.close_ts
        ]
        if not near:
            return []
        level = min(near, key=lambda lv: (abs(lv.price - bar.close), -lv.strength, lv.price))
        trade_id = f"{self.symbol}-{bar.close_ts}"
        st.watch = Watch(
            trade_id,
            level,
            bar.close_ts,
            bar.close_ts + int(self.p.watch_timeout_s * _NS_PER_S),
            bar.session_end,
        )
        st.phase = Phase.WATCHING
        ev = self._event(
            st, trade_id, bar.close_ts, "watch", level.direction, level.price, reason=level.kind
        )
        return [msgspec.structs.replace(ev, level_kind=level.kind, level_price=level.price)]

    def _absorption(
        self, st: MachineState, w: Watch, sig: PatternSignal, bar: BarView
    ) -> list[TradeEvent]:
        st.phase = Phase.ABSORPTION_DETECTED
        self._cool_start(st, "absorption", sig.ts_event)
        f = st.frame
        assert f is not None  # a watch exists only under a frame
        d = sig.direction
        support = self._support(st, sig)
        score = composite(self.p.weights, d, support, w.level, f)
        entry = bar.close
        stop, target = sl_tp(self.p.risk, d, entry, w.level.price, f, self.tick)
        reason = ""
        if not self._allowed(st, d):
            reason = "against_bias"
        elif score < self.p.min_score:
            reason = f"score_below_min:{score:.1f}<{self.p.min_score:g}"
        else:
            reason = rejection(self.p.risk, d, entry, stop, target)
        ids = [r.signal_id for r in st.recent if r.direction == d and r.pattern in dict(support)]
        common = {
            "score": score,
            "grade": grade(score),
            "level_kind": w.level.kind,
            "level_price": w.level.price,
            "signals": ids,
        }
        if reason:
            st.phase = Phase.WATCHING
            ev = self._event(
                st,
                w.trade_id,
                sig.ts_event,
                "entry_rejected",
                d,
                entry,
                stop=stop,
                target=target,
                reason=reason,
            )
            return [msgspec.structs.replace(ev, **common)]
        ts = max(sig.ts_event, bar.close_ts)
        st.trade = OpenTrade(
            w.trade_id,
            d,
            ts,
            entry,
            stop,
            stop,
            target,
            w.level,
            score,
            grade(score),
            ids,
            w.session_end,
            ts + int(self.p.max_hold_s * _NS_PER_S),
            entry,
            entry,
        )
        st.watch = None
        st.phase = Phase.POSITION_OPEN
        ev = self._event(
            st, w.trade_id, ts, "entry", d, entry, stop=stop, target=target, reason="absorption"
        )
        return [msgspec.structs.replace(ev, entry_ts=ts, entry_price=entry, **common)]

    def _support(self, st: MachineState, sig: PatternSignal) -> list[tuple[str, float]]:
        """The trigger, then the strongest recent same-direction pattern of each other kind."""
        best: dict[str, float] = {}
        for r in st.recent:
            if (
                r.direction == sig.direction
                and r.pattern != sig.pattern
                and r.pattern != "exhaustion"
            ):
                best[r.pattern] = max(best.get(r.pattern, 0.0), r.strength)
        return [(sig.pattern, sig.strength), *sorted(best.items())]

    # -- managing a trade --

    def _manage(self, st: MachineState, t: OpenTrade, bar: BarView) -> list[TradeEvent]:
        d = t.direction
        # A stop first when both were touched in one bar: the bar cannot tell which came first.
        if (bar.low <= t.stop) if d is Direction.LONG else (bar.high >= t.stop):
            # A bar that opened through the stop filled at its open, the first price it traded.
            fill = bar.open if (bar.open - t.stop) * d <= 0 else t.stop
            self._excursion(t, fill)
            return [self._exit(st, bar.close_ts, fill, self._stop_reason(st))]
        if (bar.high >= t.target) if d is Direction.LONG else (bar.low <= t.target):
            fill = bar.open if (bar.open - t.target) * d >= 0 else t.target
            self._excursion(t, fill)
            return [self._exit(st, bar.close_ts, fill, "take_profit")]
        self._excursion(t, bar.high)
        self._excursion(t, bar.low)
        return []

    def _stop_reason(self, st: MachineState) -> str:
        return {Phase.BREAK_EVEN: "break_even_stop", Phase.TRAILING: "trailing_stop"}.get(
            st.phase, "stop_loss"
        )

    def _initiative(
        self, st: MachineState, t: OpenTrade, sig: PatternSignal, bar: BarView
    ) -> list[TradeEvent]:
        d = t.direction
        kind: TradeEventKind
        if st.phase is Phase.POSITION_OPEN:
            new, kind, phase = t.entry, "breakeven", Phase.BREAK_EVEN
        else:
            new, kind, phase = (
                (bar.low if d is Direction.LONG else bar.high),
                "trail",
                Phase.TRAILING,
            )
        # A stop only ever tightens, and never to the far side of the last price.
        if (new - t.stop) * d <= 0 or (bar.close - new) * d <= 0:
            return []
        t.stop = new
        st.phase = phase
        ts = max(sig.ts_event, bar.close_ts)
        return [
            self._trade_event(
                st, t, ts, kind, bar.close, reason="initiative", signals=[sig.signal_id]
            )
        ]

    def _exit_signal(
        self, st: MachineState, t: OpenTrade, sig: PatternSignal, bar: BarView
    ) -> list[TradeEvent]:
        ts = max(sig.ts_event, bar.close_ts)
        if sig.strength >= self.p.exit_strength:
            return [self._exit(st, ts, bar.close, sig.pattern)]
        if not self._cooled(st, sig.pattern, sig.ts_event):
            return []
        self._cool_start(st, sig.pattern, sig.ts_event)
        return [
            self._trade_event(
                st, t, ts, "exit_warning", bar.close, reason=sig.pattern, signals=[sig.signal_id]
            )
        ]

    def close(self, st: MachineState, ts: int, price: float, reason: str) -> TradeEvent:
        """Exit the open trade now at ``price`` (a rebuild closing a trade it cannot resume)."""
        return self._exit(st, ts, price, reason)

    def excursion(self, t: OpenTrade, price: float) -> None:
        """Count ``price`` as traded during ``t`` (its MAE/MFE)."""
        self._excursion(t, price)

    def cool(self, kind: str) -> int:
        """The cooldown of ``kind`` in ns."""
        return self._cool(kind)

    @staticmethod
    def _excursion(t: OpenTrade, price: float) -> None:
        if (price - t.best) * t.direction > 0:
            t.best = price
        if (price - t.worst) * t.direction < 0:
            t.worst = price

    def _exit(self, st: MachineState, ts: int, price: float, reason: str) -> TradeEvent:
        t = st.trade
        assert t is not None
        self._excursion(t, price)
        pnl = (price - t.entry) * t.direction
        risk = (t.entry - t.initial_stop) * t.direction
        ev = self._trade_event(st, t, ts, "exit", price, reason=reason)
        ev = msgspec.structs.replace(
            ev,
            pnl_ticks=round(pnl / self.tick, 6),
            r_multiple=round(pnl / risk, 6),
            mae_ticks=round((t.entry - t.worst) * t.direction / self.tick, 6),
            mfe_ticks=round((t.best - t.entry) * t.direction / self.tick, 6),
        )
        st.trade = None
        st.phase = Phase.IDLE
        st.trades_closed += 1
        st.cooldown_until[watch_key(t.level)] = ts + self._cool("watch")
        return ev

    # -- events and cooldowns --

    def _cancel(self, st: MachineState, ts: int, reason: str) -> TradeEvent:
        w = st.watch
        assert w is not None
        st.watch = None
        st.phase = Phase.IDLE
        ev = self._event(
            st, w.trade_id, ts, "cancel", w.level.direction, w.level.price, reason=reason
        )
        return msgspec.structs.replace(ev, level_kind=w.level.kind, level_price=w.level.price)

    def _bias_event(self, st: MachineState, f: Frame) -> TradeEvent:
        return self._event(
            st,
            f"{self.symbol}-bias-{f.session_id}",
            f.ts_event,
            "bias",
            f.direction,
            f.poc,
            reason=f.shape,
            score=f.confidence,
        )

    def _trade_event(
        self,
        st: MachineState,
        t: OpenTrade,
        ts: int,
        kind: TradeEventKind,
        price: float,
        *,
        reason: str,
        signals: list[str] | None = None,
    ) -> TradeEvent:
        ev = self._event(
            st,
            t.trade_id,
            ts,
            kind,
            t.direction,
            price,
            stop=t.stop,
            target=t.target,
            reason=reason,
        )
        return msgspec.structs.replace(
            ev,
            score=t.score,
            grade=t.grade,
            level_kind=t.level.kind,
            level_price=t.level.price,
            signals=signals if signals is not None else list(t.signals),
            entry_ts=t.entry_ts,
            entry_price=t.entry,
        )

    def _event(
        self,
        st: MachineState,
        trade_id: str,
        ts: int,
        kind: TradeEventKind,
        direction: Direction,
        price: float,
        *,
        stop: float = 0.0,
        target: float = 0.0,
        reason: str = "",
        score: float = 0.0,
    ) -> TradeEvent:
        st.seq += 1
        return TradeEvent(
            event_id=f"{self.symbol}-{st.seq}",
            trade_id=trade_id,
            ts_event=ts,
            kind=kind,
            direction=direction,
            price=price,
            stop=stop,
            target=target,
            reason=reason,
            score=score,
        )

    def _cool(self, kind: str) -> int:
        return int(self.p.cooldown_s.get(kind, 0.0) * _NS_PER_S)

    def _cooled(self, st: MachineState, kind: str, ts: int) -> bool:
        return st.cooldown_until.get(kind, 0) <= ts

    def _cool_start(self, st: MachineState, kind: str, ts: int) -> None:
        st.cooldown_until[kind] = ts + self._cool(kind)

    def _near(self, price: float, level: float) -> bool:
        return abs(price - level) <= self.reach + 1e-9 * max(abs(level), 1.0)


def _same(a: QualifiedLevel, b: QualifiedLevel) -> bool:
    return a.kind == b.kind and a.price == b.price and a.direction == b.direction


def watch_key(level: QualifiedLevel) -> str:
    return f"watch:{level.kind}:{level.price!r}"
