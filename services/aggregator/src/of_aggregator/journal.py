"""The journal in PostgreSQL: signals, trade events, trades (stop moves, P&L, R, MAE/MFE), bias.

Idempotent upserts, written before a batch is published: a replay rewrites the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from ofcommon.db import EngineStore
from ofcommon.messages import Bias, Direction, PatternSignal, TradeEvent
from ofcommon.tables import journal_bias, journal_events, journal_signals, journal_trades

__all__ = ["Journal", "OpenTradeRow", "bias_row", "event_number", "event_row", "trade_row"]

_STOP_KINDS = ("entry", "breakeven", "trail")


def event_row(symbol: str, e: TradeEvent) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "event_id": e.event_id,
        "trade_id": e.trade_id,
        "ts_event": e.ts_event,
        "kind": e.kind,
        "direction": int(e.direction),
        "price": e.price,
        "stop": e.stop,
        "target": e.target,
        "reason": e.reason,
        "score": e.score,
        "grade": e.grade,
        "signals": list(e.signals),
        "level_kind": e.level_kind,
        "level_price": e.level_price,
        "pnl_ticks": e.pnl_ticks,
        "r_multiple": e.r_multiple,
        "mae_ticks": e.mae_ticks,
        "mfe_ticks": e.mfe_ticks,
    }


def _signal_row(symbol: str, p: PatternSignal) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "signal_id": p.signal_id,
        "ts_event": p.ts_event,
        "pattern": p.pattern,
        "direction": int(p.direction),
        "price": p.price,
        "strength": p.strength,
        "timeframe": p.timeframe,
        "details": dict(p.details),
    }


_RESULT = ("pnl_ticks", "r_multiple", "mae_ticks", "mfe_ticks")


def trade_row(
    symbol: str, trade_id: str, events: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The ``journal_trades`` row of a trade from its event rows (``event_row``) of kinds entry,
    breakeven, trail and exit, in (ts_event, event_id) order; None before its entry."""
    entry = next((r for r in events if r["kind"] == "entry"), None)
    if entry is None:
        return None
    exit_ = next((r for r in events if r["kind"] == "exit"), None)
    return {
        "symbol": symbol,
        "trade_id": trade_id,
        "direction": entry["direction"],
        "entry_ts": entry["ts_event"],
        "entry_price": entry["price"],
        "stop": entry["stop"],
        "target": entry["target"],
        "stops": [
            [r["ts_event"], r["stop"], r["kind"]] for r in events if r["kind"] in _STOP_KINDS
        ],
        "score": entry["score"],
        "grade": entry["grade"],
        "level_kind": entry["level_kind"],
        "level_price": entry["level_price"],
        "signals": entry["signals"],
        "exit_ts": exit_["ts_event"] if exit_ is not None else None,
        "exit_price": exit_["price"] if exit_ is not None else None,
        "exit_reason": exit_["reason"] if exit_ is not None else None,
        **{c: exit_[c] if exit_ is not None else None for c in _RESULT},
    }


def bias_row(symbol: str, b: Bias) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "session_id": b.session_id,
        "ts_event": b.ts_event,
        "direction": int(b.bias),
        "shape": b.shape,
        "confidence": b.confidence,
        "poc": b.poc,
        "vah": b.vah,
        "val": b.val,
        "warnings": list(b.warnings),
        "levels": [[lv.kind, lv.price, lv.strength, int(lv.direction)] for lv in b.levels],
        "merged_val": b.merged_val,
        "merged_vah": b.merged_vah,
    }


class Journal(EngineStore):
    """Writes one instrument batch in one transaction."""

    def write(
        self,
        symbol: str,
        events: Sequence[TradeEvent],
        biases: Sequence[Bias],
        signals: Sequence[PatternSignal] = (),
    ) -> None:
        with self._engine.begin() as conn:
            if signals:
                # A signal is a pure function of its inputs: a replay's copy is the same row.
                rows = list({p.signal_id: _signal_row(symbol, p) for p in signals}.values())
                stmt = insert(journal_signals).on_conflict_do_nothing(
                    index_elements=["symbol", "signal_id"]
                )
                conn.execute(stmt, rows)
            if events:
                stmt = insert(journal_events).on_conflict_do_nothing(
                    index_elements=["symbol", "event_id"]
                )
                conn.execute(stmt, [event_row(symbol, e) for e in events])
            for trade_id in dict.fromkeys(
                e.trade_id for e in events if e.kind in (*_STOP_KINDS, "exit")
            ):
                self._trade(conn, symbol, trade_id)
            if biases:
                rows = [bias_row(symbol, b) for b in biases]
                stmt = insert(journal_bias)
                keys = ("symbol", "session_id")
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={c: stmt.excluded[c] for c in rows[0] if c not in keys},
                )
                conn.execute(stmt, rows)

    @staticmethod
    def _trade(conn: Connection, symbol: str, trade_id: str) -> None:
        """The trade's row, a function of its events already in the journal (so a re-run writes
        the same row): the entry, every stop move in event order, the exit when there is one."""
        ev = journal_events.c
        rows = conn.execute(
            select(journal_events)
            .where(
                ev.symbol == symbol,
                ev.trade_id == trade_id,
                ev.kind.in_((*_STOP_KINDS, "exit")),
            )
            .order_by(ev.ts_event, ev.event_id)
        ).all()
        values = trade_row(symbol, trade_id, [dict(r._mapping) for r in rows])
        if values is None:
            return
        stmt = insert(journal_trades)
        stmt = stmt.on_conflict_do_update(
            index_elements=["symbol", "trade_id"],
            set_={c: stmt.excluded[c] for c in values if c not in ("symbol", "trade_id")},
        )
        conn.execute(stmt, values)

    # --- reads, for a rebuild without a checkpoint (rebuild.py) ---------------------------------

    def bias_seq(self, symbol: str, session_id: str) -> int | None:
        """The event number of the ``bias`` event of ``session_id`` (None: not journaled)."""
        ev = journal_events.c
        with self._engine.connect() as conn:
            found = conn.execute(
                select(ev.event_id).where(
                    ev.symbol == symbol,
                    ev.kind == "bias",
                    ev.trade_id == f"{symbol}-bias-{session_id}",
                )
            ).first()
        return None if found is None else event_number(found.event_id)

    def latest_bias(self, symbol: str) -> tuple[str, int] | None:
        """(session id, close) of the latest journaled frame (None: none)."""
        b = journal_bias.c
        with self._engine.connect() as conn:
            row = conn.execute(
                select(b.session_id, b.ts_event)
                .where(b.symbol == symbol)
                .order_by(b.ts_event.desc())
                .limit(1)
            ).first()
        return None if row is None else (row.session_id, row.ts_event)

    def last_seq(self, symbol: str) -> int:
        """The highest event number journaled for ``symbol`` (0: none)."""
        ev = journal_events.c
        with self._engine.connect() as conn:
            ids = conn.execute(select(ev.event_id).where(ev.symbol == symbol)).scalars().all()
        return max((event_number(i) for i in ids), default=0)

    def events_between(self, symbol: str, start_ns: int, end_ns: int) -> list[TradeEvent]:
        """Journaled events with ``start_ns <= ts_event <= end_ns``, in event order."""
        ev = journal_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(journal_events)
                .where(ev.symbol == symbol, ev.ts_event >= start_ns, ev.ts_event <= end_ns)
                .order_by(ev.ts_event, ev.event_id)
            ).all()
        return [_row_event(r) for r in rows]

    def signals_between(self, symbol: str, start_ns: int, end_ns: int) -> list[PatternSignal]:
        """Journaled signals with ``start_ns <= ts_event < end_ns``, oldest first."""
        sg = journal_signals.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(journal_signals)
                .where(sg.symbol == symbol, sg.ts_event >= start_ns, sg.ts_event < end_ns)
                .order_by(sg.ts_event, sg.signal_id)
            ).all()
        return [
            PatternSignal(
                r.signal_id,
                r.ts_event,
                r.pattern,
                Direction(r.direction),
                r.price,
                r.strength,
                r.timeframe,
                dict(r.details),
            )
            for r in rows
        ]

    def trades_closed(self, symbol: str, by_ns: int) -> int:
        tr = journal_trades.c
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(journal_trades)
                    .where(tr.symbol == symbol, tr.exit_ts.is_not(None), tr.exit_ts <= by_ns)
                ).scalar_one()
            )

    def open_trades(self, symbol: str) -> list[OpenTradeRow]:
        """Journaled trades of ``symbol`` without an exit, oldest entry first."""
        tr = journal_trades.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(journal_trades)
                .where(tr.symbol == symbol, tr.exit_ts.is_(None))
                .order_by(tr.entry_ts, tr.trade_id)
            ).all()
        return [
            OpenTradeRow(
                trade_id=r.trade_id,
                direction=Direction(r.direction),
                entry_ts=r.entry_ts,
                entry_price=r.entry_price,
                initial_stop=r.stop,
                target=r.target,
                stops=[(int(ts), float(stop), str(kind)) for ts, stop, kind in r.stops],
                score=r.score,
                grade=r.grade,
                level_kind=r.level_kind,
                level_price=r.level_price,
                signals=list(r.signals),
            )
            for r in rows
        ]


class OpenTradeRow(msgspec.Struct, frozen=True, kw_only=True):
    """A journaled trade without an exit: what a rebuild needs to resume it."""

    trade_id: str
    direction: Direction
    entry_ts: int
    entry_price: float
    initial_stop: float
    target: float
    stops: list[tuple[int, float, str]]  # (ts, stop, kind): the entry's, then every move
    score: float
    grade: str
    level_kind: str
    level_price: float
    signals: list[str]


def event_number(event_id: str) -> int:
    """n of an event id ``SYMBOL-n``."""
    return int(event_id.rsplit("-", 1)[1])


def _row_event(r: Any) -> TradeEvent:
    return TradeEvent(
        event_id=r.event_id,
        trade_id=r.trade_id,
        ts_event=r.ts_event,
        kind=r.kind,
        direction=Direction(r.direction),
        price=r.price,
        stop=r.stop,
        target=r.target,
        reason=r.reason,
        score=r.score,
        grade=r.grade,
        signals=list(r.signals),
        level_kind=r.level_kind,
        level_price=r.level_price,
    )
