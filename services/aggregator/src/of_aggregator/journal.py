"""The journal in PostgreSQL: trade events, trades (every stop move, P&L, R, MAE/MFE) and bias.

Idempotent upserts, written before a batch is published: a replay rewrites the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from ofcommon.db import EngineStore
from ofcommon.messages import Bias, TradeEvent
from ofcommon.tables import journal_bias, journal_events, journal_trades

__all__ = ["Journal", "bias_row", "event_row", "trade_row"]

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

    def write(self, symbol: str, events: Sequence[TradeEvent], biases: Sequence[Bias]) -> None:
        with self._engine.begin() as conn:
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
