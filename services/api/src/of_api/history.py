"""History from PostgreSQL: closed 1-minute bars, session profiles and the aggregator's journal.

A synchronous store (``EngineStore``) called through ``asyncio.to_thread``; rows become wire types.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, and_, false, func, select
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.engine import RowMapping

from ofcommon.db import EngineStore
from ofcommon.messages import (
    Bar,
    Bias,
    BigPrint,
    Direction,
    FootprintRow,
    ImbalanceRow,
    KeyLevel,
    ProfileUpdate,
    Side,
    SizeKind,
    StackedRun,
)
from ofcommon.tables import bars_1m, journal_bias, journal_events, journal_trades, session_profiles


def bar_of(row: RowMapping) -> Bar:
    """A stored closed 1-minute bar as the ``Bar`` the stream carried."""
    return Bar(
        "1m",
        row["open_ts"],
        row["close_ts"],
        row["open"],
        row["high"],
        row["low"],
        row["close"],
        row["volume"],
        row["buy_volume"],
        row["sell_volume"],
        row["delta"],
        row["delta_min"],
        row["delta_max"],
        row["trades"],
        row["vwap"],
        row["poc"],
        [FootprintRow(p, b, a, int(n)) for p, b, a, n in row["footprint"]],
        True,
        row["rev"],
        row["delta_at_high"],
        row["delta_at_low"],
        row["cvd"],
        row["cvd_total"],
        [ImbalanceRow(p, Side(s), math.inf if r is None else r) for p, s, r in row["imbalances"]],
        [StackedRun(Side(s), lo, hi, int(n)) for s, lo, hi, n in row["stacked"]],
        row["unfinished_high"],
        row["unfinished_low"],
        [BigPrint(int(t), p, z, Side(s)) for t, p, z, s in row["big_trades"]],
        row["gapped"],
    )


def profile_of(row: RowMapping) -> ProfileUpdate:
    return ProfileUpdate(
        scope=row["scope"],
        session_id=row["session_id"],
        session_start=row["session_start"],
        session_end=row["session_end"],
        ts_event=row["ts_event"],
        poc=row["poc"],
        vah=row["vah"],
        val=row["val"],
        volume=row["volume"],
        rows=[(p, v) for p, v in row["rows"]],
        shape=row["shape"],
        final=row["final"],
        hvn=list(row["hvn"]),
        lvn=list(row["lvn"]),
        single_prints=list(row["single_prints"]),
        naked_pocs=list(row["naked_pocs"]),
        volume_kind=SizeKind(row["volume_kind"]),
    )


def bias_of(row: RowMapping) -> Bias:
    return Bias(
        session_id=row["session_id"],
        ts_event=row["ts_event"],
        bias=Direction(row["direction"]),
        shape=row["shape"],
        # the journal keeps [kind, price, strength, direction]; a frame's levels are qualified
        levels=[KeyLevel(k, p, st, True, Direction(d)) for k, p, st, d in row["levels"]],
        confidence=row["confidence"],
        poc=row["poc"],
        vah=row["vah"],
        val=row["val"],
        warnings=list(row["warnings"]),
        merged_val=row["merged_val"],
        merged_vah=row["merged_vah"],
    )


class JournalQuery:
    """Filters of ``/api/journal``: all optional; times are entry times in ns."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        start_ns: int | None = None,
        end_ns: int | None = None,
        grades: Sequence[str] = (),
        signal_ids: Sequence[str] | None = None,
        closed: bool | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.grades = list(grades)
        self.signal_ids = None if signal_ids is None else list(signal_ids)
        self.closed = closed

    def where(self) -> Any:
        t = journal_trades.c
        conds: list[Any] = [t.symbol.in_(self.symbols)]
        if self.start_ns is not None:
            conds.append(t.entry_ts >= self.start_ns)
        if self.end_ns is not None:
            conds.append(t.entry_ts < self.end_ns)
        if self.grades:
            conds.append(t.grade.in_(self.grades))
        if self.signal_ids is not None:
            # no signal of the pattern left: nothing matches (an empty ?| array has no type)
            conds.append(
                t.signals.op("?|")(array(self.signal_ids, type_=Text).cast(ARRAY(Text)))
                if self.signal_ids
                else false()
            )
        if self.closed is True:
            conds.append(t.exit_ts.is_not(None))
        elif self.closed is False:
            conds.append(t.exit_ts.is_(None))
        return and_(*conds)


class History(EngineStore):
    """Read-only queries of the api."""

    def bars(self, symbol: str, start_ns: int, end_ns: int, limit: int) -> list[Bar]:
        """The last ``limit`` closed 1m bars opening in [start_ns, end_ns), oldest first."""
        c = bars_1m.c
        q = (
            select(bars_1m)
            .where(c.symbol == symbol, c.open_ts >= start_ns, c.open_ts < end_ns)
            .order_by(c.open_ts.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [bar_of(r) for r in reversed(rows)]

    def last_bar_close(self, symbol: str) -> int | None:
        c = bars_1m.c
        with self._engine.connect() as conn:
            value = conn.execute(select(func.max(c.close_ts)).where(c.symbol == symbol)).scalar()
        return None if value is None else int(value)

    def profiles(self, symbol: str, scope: str, limit: int) -> list[ProfileUpdate]:
        """The newest ``limit`` stored profiles of ``scope`` (``session``, or ``composite`` for
        any ``composite:N``), newest session first."""
        c = session_profiles.c
        q = (
            select(session_profiles)
            .where(
                c.symbol == symbol,
                c.scope.like("composite:%") if scope == "composite" else c.scope == scope,
            )
            .order_by(c.session_start.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [profile_of(r) for r in conn.execute(q).mappings()]

    def latest_bias(self, symbol: str) -> Bias | None:
        c = journal_bias.c
        q = select(journal_bias).where(c.symbol == symbol).order_by(c.ts_event.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else bias_of(row)

    def events(self, symbol: str, limit: int, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The newest ``limit`` journal events (trade events) of ``symbol``, newest first."""
        c = journal_events.c
        q = select(journal_events).where(c.symbol == symbol)
        if kinds:
            q = q.where(c.kind.in_(list(kinds)))
        q = q.order_by(c.ts_event.desc(), c.event_id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def trade(self, symbol: str, trade_id: str) -> dict[str, Any] | None:
        c = journal_trades.c
        q = select(journal_trades).where(c.symbol == symbol, c.trade_id == trade_id)
        with self._engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else dict(row)

    def trades(
        self, query: JournalQuery, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page of trades newest entry first)."""
        t = journal_trades.c
        cond = query.where()
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(journal_trades).where(cond))
            n = int(total.scalar() or 0)
            q = (
                select(journal_trades)
                .where(cond)
                .order_by(t.entry_ts.desc(), t.symbol, t.trade_id)
                .offset(offset)
                .limit(limit)
            )
            rows = [dict(r) for r in conn.execute(q).mappings()]
        return n, rows

    def closed_trades(self, query: JournalQuery) -> list[dict[str, Any]]:
        """Every closed trade matching ``query``, in exit order."""
        t = journal_trades.c
        q = (
            select(journal_trades)
            .where(query.where(), t.exit_ts.is_not(None))
            .order_by(t.exit_ts, t.symbol, t.trade_id)
        )
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
