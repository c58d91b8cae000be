"""Aggregator state rebuilt without a checkpoint: the frame at the last consumed session close
from PostgreSQL, then the input streams after it folded up to what the group has consumed.

Used as ``ofcommon.stage.Rebuild`` when Redis lost the snapshot or it is of another version
(docs/aggregator.md "Rebuild without a checkpoint").

* Position. Each input stream counts as consumed up to the entry before the group's oldest
  pending one, else up to its last-delivered ID (``ofcommon.consumed``): the outputs of those
  entries are in the journal (written before the acknowledgement). Pending entries are re-read.
* Cut. ``E`` = the close of the latest consumed final session profile that the consumed bars
  had passed (so the fold had framed it). At ``E`` the machine is idle: the session's trades and
  watches end with it. The frame is recomputed from the stored final session profiles
  (analytics' ``session_profiles``) and the closes of the stored 1-minute bars (``bars_1m``);
  the event counter from the journaled ``bias`` event of that session; cooldowns from the
  journaled events before ``E``, the recent patterns from ``journal_signals``.
* Stream. Bars closing after ``E``, patterns at or after ``E`` and later profiles, up to the
  consumed positions, go through the real fold in entry-ID order; their outputs are dropped
  (they were published and journaled when first folded).
* Nothing consumed yet but entries pending (a worker died before its first checkpoint): no
  rebuild, the pending entries are re-read from the start.
* Streams lost. If the profile stream no longer holds that session (Redis lost its data), the
  cut is the latest journaled bias, the event counter the journal's highest, and the last bar
  the latest stored one. A journaled trade without an exit that the fold did not reopen is
  resumed (its stop moves from the journal, its excursions from the stored bars); one whose
  session had already ended is closed at that session's last stored close with reason
  ``session_end``, the exit journaled and published by the rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from of_aggregator.fold import BAR_NS, BAR_TIMEFRAME, HISTORY, AggregatorFold, AggregatorState
from of_aggregator.framing import QualifiedLevel, SessionProfile
from of_aggregator.journal import Journal, OpenTradeRow
from of_aggregator.machine import BarView, MachineState, OpenTrade, Phase, Recent, TradeMachine
from of_analytics.persist import AnalyticsStore
from ofcommon import entry_ids, keys
from ofcommon.bus import Producer, Redis, decode_fields
from ofcommon.consumed import consumed
from ofcommon.messages import Bar, Message, PatternSignal, ProfileUpdate, TradeEvent
from ofcommon.sessions import session_bounds
from ofcommon.stage import Rebuilt

__all__ = ["AggregatorRebuild"]

log = logging.getLogger(__name__)

_NS_PER_S: Final = 1_000_000_000
_CHUNK: Final = 1000
_FAR: Final = 2**62
_DAY_NS: Final = 86_400 * _NS_PER_S
HISTORY_LOOKBACK_DAYS: Final = 30
_PHASE_OF_STOP: Final = {
    "entry": Phase.POSITION_OPEN,
    "breakeven": Phase.BREAK_EVEN,
    "trail": Phase.TRAILING,
}

Entry = tuple[str, Message | None]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _back_until(
    redis: Redis, stream: str, upto: str | None, done: Callable[[Message | None], bool]
) -> tuple[list[Entry], Message | None, bool]:
    """Entries from ``upto`` (inclusive) back to the newest one ``done`` accepts: (the entries
    after it, oldest first; that entry's message or None; whether the stream's start was hit)."""
    after: list[Entry] = []
    top = upto
    while top is not None:
        raw: Any = await redis.xrevrange(stream, max=top, min="-", count=_CHUNK)
        for entry_id, fields in raw:
            eid = _text(entry_id)
            if eid == top and after and after[-1][0] == eid:
                continue
            msg = decode_fields(fields)[0]
            if done(msg):
                after.reverse()
                return after, msg, False
            after.append((eid, msg))
        if len(raw) < _CHUNK:
            break
        top = f"({_text(raw[-1][0])}"
    after.reverse()
    return after, None, True


async def _first_bar(redis: Redis, stream: str) -> Bar | None:
    """The oldest final 1-minute bar on ``stream`` (None: none)."""
    low = "-"
    while True:
        raw: Any = await redis.xrange(stream, min=low, max="+", count=_CHUNK)
        for _, fields in raw:
            bar = _final_bar(decode_fields(fields)[0])
            if bar is not None:
                return bar
        if len(raw) < _CHUNK:
            return None
        low = f"({_text(raw[-1][0])}"


def _final_bar(msg: Message | None) -> Bar | None:
    if isinstance(msg, Bar) and msg.final and msg.timeframe == BAR_TIMEFRAME:
        return msg
    return None


def _final_session(msg: Message | None) -> ProfileUpdate | None:
    if isinstance(msg, ProfileUpdate) and msg.final and msg.scope == "session":
        return msg
    return None


@dataclass(slots=True)
class _Inputs:
    """Consumed stream entries after the cut, by input kind, and what the streams still hold."""

    positions: dict[str, str] = field(default_factory=dict)  # stream key -> consumed entry ID
    after: dict[str, list[Entry]] = field(default_factory=dict)
    complete: bool = True  # the streams reach back to the cut


class AggregatorRebuild:
    """``ofcommon.stage.Rebuild`` of the aggregator stage (see the module docstring)."""

    def __init__(self, fold: AggregatorFold, journal: Journal, store: AnalyticsStore) -> None:
        self._fold = fold
        self._journal = journal
        self._store = store

    async def __call__(self, symbol: str, redis: Redis) -> Rebuilt[AggregatorState] | None:
        streams = {kind: keys.stream(symbol, kind) for kind in self._fold.inputs}
        got = _Inputs()
        pending = False
        for key in streams.values():
            pos, waiting = await consumed(redis, key, self._fold.stage)
            pending |= waiting
            if pos is not None:
                got.positions[key] = pos
        if not got.positions and pending:
            # A worker died before its first checkpoint: nothing was consumed, the pending
            # entries are all re-read, and journal rows they caused would be counted twice.
            return None
        # The latest consumed final bar: the bars' event time the fold had reached.
        bars_at = got.positions.get(streams["bars"])
        _, latest, _ = await _back_until(
            redis, streams["bars"], bars_at, lambda m: _final_bar(m) is not None
        )
        latest_bar = _final_bar(latest)
        reached = latest_bar.close_ts if latest_bar is not None else None
        # The cut: the newest consumed final session profile the bars had passed.
        prof_after, cut_msg, _ = await _back_until(
            redis,
            streams["profile"],
            got.positions.get(streams["profile"]),
            lambda m: (
                (u := _final_session(m)) is not None
                and reached is not None
                and u.session_end <= reached
            ),
        )
        cut = _final_session(cut_msg)
        state = await asyncio.to_thread(self._at_cut, symbol, cut, got)
        if state is None:
            if got.positions:
                log.warning("%s aggregator: no frame to rebuild from, starting empty", symbol)
            return None
        end = state.machine.frame.ts_event if state.machine.frame is not None else 0
        got.after["profile"] = prof_after if cut is not None else []
        bars_after, _, _ = await _back_until(
            redis,
            streams["bars"],
            bars_at,
            lambda m: (b := _final_bar(m)) is not None and b.close_ts <= end,
        )
        got.after["bars"] = bars_after if got.complete else []
        pats, _, _ = await _back_until(
            redis,
            streams["patterns"],
            got.positions.get(streams["patterns"]),
            lambda m: isinstance(m, PatternSignal) and m.ts_event < end,
        )
        got.after["patterns"] = pats if got.complete else []
        folded = self._fold_after(state, got)
        seen_by = _FAR
        if not got.complete:
            # The stored bars the new streams will not bring again count as seen.
            first = await _first_bar(redis, streams["bars"])
            seen_by = _FAR if first is None else first.close_ts - 1
            await asyncio.to_thread(self._catch_up, state, seen_by)
        closing = await asyncio.to_thread(self._resume_open, state, seen_by)
        if closing:
            await asyncio.to_thread(self._journal.write, symbol, closing, [])
            producer = Producer(redis, service=self._fold.stage)
            for ev in closing:
                producer.add(streams_out(symbol), ev)
            await producer.flush()
        log.warning(
            "%s aggregator rebuilt: frame of %s, %d stream entries folded%s",
            symbol,
            state.machine.frame.session_id if state.machine.frame is not None else None,
            folded,
            "" if got.complete else " (the streams did not reach back to it)",
        )
        return Rebuilt(state, dict(got.positions))

    # --- the state at the cut (PostgreSQL) -----------------------------------------------------

    def _at_cut(
        self, symbol: str, cut: ProfileUpdate | None, got: _Inputs
    ) -> AggregatorState | None:
        journal = self._journal
        if cut is None:
            got.complete = False
            latest = journal.latest_bias(symbol)
            if latest is None:
                return None
            session_id, end = latest
        else:
            session_id, end = cut.session_id, cut.session_end
        history = self._history(symbol, end, cut)
        if not history or history[-1].session_id != session_id:
            log.warning("%s aggregator: session %s is not stored", symbol, session_id)
            return None
        fold = self._fold
        machine = fold.machine_of(symbol)
        p = machine.p
        seq = journal.bias_seq(symbol, session_id)
        if seq is None or not got.complete:
            seq = max(seq or 0, journal.last_seq(symbol))
        st = MachineState(
            frame=fold.reframe(symbol, history),
            seq=seq,
            trades_closed=journal.trades_closed(symbol, end),
        )
        longest = max([*p.cooldown_s.values(), 0.0])
        for ev in journal.events_between(symbol, end - int(longest * _NS_PER_S), end):
            _cooldown(machine, st, ev)
        st.cooldown_until = {k: v for k, v in st.cooldown_until.items() if v > end}
        window = int(p.support_window_s * _NS_PER_S)
        st.recent = [
            Recent(s.signal_id, s.ts_event, s.pattern, s.direction, s.strength)
            for s in journal.signals_between(symbol, end - window, end)
        ]
        bars = [
            b for b in self._store.bars_between(symbol, end - _DAY_NS, end) if b.close_ts <= end
        ]
        st.last_bar = self._in_session(symbol, bars)
        state = AggregatorState(
            symbol=symbol,
            machine=st,
            history=history,
            closes=[(b.close_ts, b.close) for b in bars[-2:]],
        )
        state.last_status = fold.status_key(state, end)
        return state

    def _history(self, symbol: str, end: int, cut: ProfileUpdate | None) -> list[SessionProfile]:
        stored = [
            u
            for u in self._store.profiles(symbol, end - HISTORY_LOOKBACK_DAYS * _DAY_NS)
            if u.final and u.scope == "session" and u.session_end <= end
        ]
        by_id = {u.session_id: u for u in stored}
        if cut is not None:
            by_id[cut.session_id] = cut  # the stream's copy is the one the fold framed
        chosen = sorted(by_id.values(), key=lambda u: u.session_end)[-HISTORY:]
        out = []
        for u in chosen:
            last = self._store.last_bar(symbol, u.session_end)
            out.append(SessionProfile.from_update(u, last.close if last is not None else 0.0))
        return out

    def _in_session(self, symbol: str, bars: list[Bar]) -> BarView | None:
        spec = self._fold.instrument(symbol).session_spec
        for b in reversed(bars):
            start, end = session_bounds(spec, b.open_ts)
            if start <= b.open_ts < end:
                return BarView(b.open_ts, b.close_ts, b.open, b.high, b.low, b.close, end)
        return None

    # --- the stream after the cut ---------------------------------------------------------------

    def _fold_after(self, state: AggregatorState, got: _Inputs) -> int:
        order = {k: n for n, k in enumerate(self._fold.inputs)}
        items = sorted(
            (entry_ids.parse(eid), order[kind], kind, msg)
            for kind, entries in got.after.items()
            for eid, msg in entries
            if msg is not None
        )
        for at, _, kind, msg in items:
            # A message refused now was refused when first folded: it was dead-lettered then.
            with contextlib.suppress(ValueError):
                self._fold.step(state, kind, msg, at)
        return len(items)

    # --- open trades from the journal -----------------------------------------------------------

    def _catch_up(self, state: AggregatorState, seen_by: int) -> None:
        """The last bar and closes from the latest stored bars closed by ``seen_by``."""
        st = state.machine
        latest = self._store.last_bar(state.symbol, seen_by)
        if latest is None or (st.last_bar is not None and latest.close_ts <= st.last_bar.close_ts):
            return
        bars = self._store.bars_between(state.symbol, latest.open_ts - _DAY_NS, latest.open_ts + 1)
        st.last_bar = self._in_session(state.symbol, bars) or st.last_bar
        state.closes = [(b.close_ts, b.close) for b in bars[-2:]]

    def _resume_open(self, state: AggregatorState, seen_by: int) -> list[TradeEvent]:
        symbol, st = state.symbol, state.machine
        open_rows = self._journal.open_trades(symbol)
        if st.trade is not None:
            open_rows = [r for r in open_rows if r.trade_id != st.trade.trade_id]
        if not open_rows:
            return []
        closing: list[TradeEvent] = []
        for row in open_rows:
            if st.trade is not None:
                log.error(
                    "%s aggregator: journaled trade %s has no exit and another trade (%s) is"
                    " open; it is closed at the last close",
                    symbol,
                    row.trade_id,
                    st.trade.trade_id,
                )
            trade = self._reopen(symbol, row, seen_by)
            if st.trade is not None or trade.session_end <= self._now(st):
                closing.append(self._close(symbol, st, trade))
                continue
            st.watch = None
            st.trade = trade
            st.phase = _PHASE_OF_STOP.get(
                row.stops[-1][2] if row.stops else "entry", Phase.POSITION_OPEN
            )
            log.warning("%s aggregator: resumed journaled trade %s", symbol, row.trade_id)
        return closing

    @staticmethod
    def _now(st: MachineState) -> int:
        bar = st.last_bar
        return bar.close_ts if bar is not None else 0

    def _reopen(self, symbol: str, row: OpenTradeRow, seen_by: int) -> OpenTrade:
        machine = self._fold.machine_of(symbol)
        spec = self._fold.instrument(symbol).session_spec
        _, session_end = session_bounds(spec, row.entry_ts - 1)
        level = QualifiedLevel(row.level_kind, row.level_price, row.direction, 0.0, ())
        stop = row.stops[-1][1] if row.stops else row.initial_stop
        trade = OpenTrade(
            row.trade_id,
            row.direction,
            row.entry_ts,
            row.entry_price,
            stop,
            row.initial_stop,
            row.target,
            level,
            row.score,
            row.grade,
            list(row.signals),
            session_end,
            row.entry_ts + int(machine.p.max_hold_s * _NS_PER_S),
            row.entry_price,
            row.entry_price,
        )
        # Excursions from the stored bars since the entry (the bar of the entry included).
        for b in self._store.bars_between(symbol, row.entry_ts - BAR_NS, seen_by):
            if row.entry_ts < b.close_ts <= seen_by:
                machine.excursion(trade, b.high)
                machine.excursion(trade, b.low)
        return trade

    def _close(self, symbol: str, st: MachineState, trade: OpenTrade) -> TradeEvent:
        """Exit ``trade`` at its session's last stored close (its session ended while nothing
        ran, or another trade holds the instrument), leaving the rest of ``st`` as it was."""
        machine = self._fold.machine_of(symbol)
        held = (st.trade, st.phase)
        st.trade, st.phase = trade, Phase.POSITION_OPEN
        last = self._store.last_bar(symbol, trade.session_end)
        price = last.close if last is not None else trade.entry
        ts = min(trade.session_end, max(self._now(st), trade.entry_ts))
        reason = "session_end" if ts == trade.session_end else "rebuild_conflict"
        ev = machine.close(st, ts, price, reason)
        st.trade, st.phase = held
        return ev


def _cooldown(machine: TradeMachine, st: MachineState, ev: TradeEvent) -> None:
    """The cooldowns ``ev`` started (machine.py): re-watching its level after a watch or trade
    ended, and the signal kinds that acted (from the event's time: for entries and warnings the
    signal may be up to a bar older, so the cooldown may end a little late)."""
    until = st.cooldown_until
    level = f"watch:{ev.level_kind}:{ev.level_price!r}"
    if (ev.kind == "cancel" and ev.reason in ("session_end", "watch_expired")) or ev.kind == "exit":
        until[level] = ev.ts_event + machine.cool("watch")
    elif ev.kind == "alert" and ev.reason == "sweep":
        until["sweep"] = ev.ts_event + machine.cool("sweep")
    elif ev.kind in ("entry", "entry_rejected"):
        until["absorption"] = ev.ts_event + machine.cool("absorption")
    elif ev.kind == "exit_warning" and ev.reason in ("exhaustion", "divergence"):
        until[ev.reason] = ev.ts_event + machine.cool(ev.reason)


def streams_out(symbol: str) -> str:
    return keys.stream(symbol, "tradeevents")
