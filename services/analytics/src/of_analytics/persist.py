"""PostgreSQL persistence of closed 1-minute bars and session profiles, and the reads for rebuild.

Writes are batched, idempotent upserts: replaying a stream, or two workers writing the same batch,
leaves the same rows as one uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert

from ofcommon.db import EngineStore
from ofcommon.messages import (
    Bar,
    BigPrint,
    FootprintRow,
    ImbalanceRow,
    Level,
    ProfileUpdate,
    Side,
    SizeKind,
    StackedRun,
)
from ofcommon.tables import bars_1m, session_profiles

__all__ = ["BAR_TIMEFRAME", "AnalyticsStore"]

BAR_TIMEFRAME: Final = "1m"

# Rows per executemany: psycopg 3 pipelines the statements, so this only bounds the memory of one
# round of parameters; every call is still one transaction.
_CHUNK: Final = 5_000

_BAR_VALUE_COLUMNS: Final = tuple(
    c.name for c in bars_1m.columns if c.name not in {"symbol", "open_ts"}
)
_PROFILE_VALUE_COLUMNS: Final = tuple(
    c.name for c in session_profiles.columns if c.name not in {"symbol", "scope", "session_id"}
)


def _bar_row(symbol: str, bar: Bar) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "open_ts": bar.open_ts,
        "close_ts": bar.close_ts,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "buy_volume": bar.buy_volume,
        "sell_volume": bar.sell_volume,
        "delta": bar.delta,
        "delta_min": bar.delta_min,
        "delta_max": bar.delta_max,
        "trades": bar.trades,
        "vwap": bar.vwap,
        "poc": bar.poc,
        "footprint": [[r.price, r.bid_volume, r.ask_volume, r.trades] for r in bar.footprint],
        "rev": bar.rev,
        "delta_at_high": bar.delta_at_high,
        "delta_at_low": bar.delta_at_low,
        "cvd": bar.cvd,
        "cvd_total": bar.cvd_total,
        "imbalances": [[i.price, int(i.side), _json_ratio(i.ratio)] for i in bar.imbalances],
        "stacked": [[int(r.side), r.low, r.high, r.rows] for r in bar.stacked],
        "unfinished_high": bar.unfinished_high,
        "unfinished_low": bar.unfinished_low,
        "big_trades": [[b.ts_event, b.price, b.size, int(b.side)] for b in bar.big_trades],
        "gapped": bar.gapped,
    }


def _json_ratio(ratio: float) -> float | None:
    # jsonb rejects Infinity; an unbounded ratio (empty opposite side) is stored as null.
    return None if math.isinf(ratio) else ratio


def _imbalance(row: list[Any]) -> ImbalanceRow:
    price, side, ratio = row
    return ImbalanceRow(float(price), Side(side), math.inf if ratio is None else float(ratio))


def _row_bar(row: Any) -> Bar:
    # convert, not the raw JSON: jsonb prints a whole-number float such as 1e20 without a
    # fraction, which json.loads would hand back as an int.
    footprint = msgspec.convert(row.footprint, list[FootprintRow])
    return Bar(
        timeframe=BAR_TIMEFRAME,
        open_ts=row.open_ts,
        close_ts=row.close_ts,
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
        buy_volume=row.buy_volume,
        sell_volume=row.sell_volume,
        delta=row.delta,
        delta_min=row.delta_min,
        delta_max=row.delta_max,
        trades=row.trades,
        vwap=row.vwap,
        poc=row.poc,
        footprint=footprint,
        final=True,
        rev=row.rev,
        delta_at_high=row.delta_at_high,
        delta_at_low=row.delta_at_low,
        cvd=row.cvd,
        cvd_total=row.cvd_total,
        imbalances=[_imbalance(r) for r in row.imbalances],
        stacked=msgspec.convert(row.stacked, list[StackedRun]),
        unfinished_high=row.unfinished_high,
        unfinished_low=row.unfinished_low,
        big_trades=msgspec.convert(row.big_trades, list[BigPrint]),
        gapped=row.gapped,
    )


def _profile_row(symbol: str, update: ProfileUpdate) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "scope": update.scope,
        "session_id": update.session_id,
        "session_start": update.session_start,
        "session_end": update.session_end,
        "poc": update.poc,
        "vah": update.vah,
        "val": update.val,
        "volume": update.volume,
        "shape": update.shape,
        "rows": [[price, size] for price, size in update.rows],
        "final": update.final,
        "ts_event": update.ts_event,
        "hvn": update.hvn,
        "lvn": update.lvn,
        "single_prints": update.single_prints,
        "naked_pocs": update.naked_pocs,
        "volume_kind": int(update.volume_kind),
    }


def _row_profile(row: Any) -> ProfileUpdate:
    return ProfileUpdate(
        scope=row.scope,
        session_id=row.session_id,
        session_start=row.session_start,
        session_end=row.session_end,
        ts_event=row.ts_event,
        poc=row.poc,
        vah=row.vah,
        val=row.val,
        volume=row.volume,
        rows=msgspec.convert(row.rows, list[Level]),
        shape=row.shape,
        final=row.final,
        hvn=msgspec.convert(row.hvn, list[float]),
        lvn=msgspec.convert(row.lvn, list[float]),
        single_prints=msgspec.convert(row.single_prints, list[float]),
        naked_pocs=msgspec.convert(row.naked_pocs, list[float]),
        volume_kind=SizeKind(row.volume_kind),
    )


def _profile_rank(update: ProfileUpdate) -> tuple[bool, int]:
    """The order in which updates of one profile supersede each other (the SQL rule below)."""
    return (update.final, update.ts_event)


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


class AnalyticsStore(EngineStore):
    """Closed 1-minute bars and session profiles in PostgreSQL (sync: call via asyncio.to_thread).

    Expects the schema at 0003_bar_analytics or later (ofcommon.db.migrate).
    """

    def __init__(self, url: str, *, pool_size: int = 2) -> None:
        super().__init__(url, pool_size=pool_size)
        bar_new = insert(bars_1m).excluded
        self._upsert_bar = insert(bars_1m).on_conflict_do_update(
            index_elements=[bars_1m.c.symbol, bars_1m.c.open_ts],
            set_={name: bar_new[name] for name in _BAR_VALUE_COLUMNS},
            # An amendment carries a higher rev; a replay of an older publication must not
            # undo it. Equal revs rewrite the same values, which keeps replays idempotent.
            where=bars_1m.c.rev <= bar_new.rev,
        )
        prof_new = insert(session_profiles).excluded
        stored = session_profiles.c
        self._upsert_profile = insert(session_profiles).on_conflict_do_update(
            index_elements=[stored.symbol, stored.scope, stored.session_id],
            set_={name: prof_new[name] for name in _PROFILE_VALUE_COLUMNS},
            # A closed profile is never reopened by a late developing update; among updates of
            # the same finality the newer (or equal, for idempotent replays) event time wins.
            where=or_(
                and_(prof_new.final, ~stored.final),
                and_(prof_new.final == stored.final, stored.ts_event <= prof_new.ts_event),
            ),
        )

    def write_bars(self, symbol: str, bars: Sequence[Bar]) -> int:
        """Upsert the final bars of ``bars`` in one transaction; partials are skipped.

        Returns the number of rows sent (after dropping partials and superseded duplicates).
        """
        latest: dict[int, Bar] = {}
        for bar in bars:
            if bar.timeframe != BAR_TIMEFRAME:
                raise ValueError(f"only {BAR_TIMEFRAME} bars are stored, got {bar.timeframe!r}")
            if not bar.final:
                continue
            # One INSERT … ON CONFLICT cannot touch a row twice, so collapse the batch first.
            seen = latest.get(bar.open_ts)
            if seen is None or seen.rev <= bar.rev:
                latest[bar.open_ts] = bar
        # Key order: concurrent writers of overlapping batches lock rows in the same order and
        # so wait for each other instead of deadlocking.
        rows = [_bar_row(symbol, latest[ts]) for ts in sorted(latest)]
        self._write(self._upsert_bar, rows)
        return len(rows)

    def write_profiles(self, symbol: str, updates: Sequence[ProfileUpdate]) -> int:
        """Upsert profile updates in one transaction; a final profile is never overwritten by a
        developing one. Returns the number of rows sent."""
        latest: dict[tuple[str, str], ProfileUpdate] = {}
        for update in updates:
            key = (update.scope, update.session_id)
            seen = latest.get(key)
            if seen is None or _profile_rank(seen) <= _profile_rank(update):
                latest[key] = update
        rows = [_profile_row(symbol, latest[key]) for key in sorted(latest)]
        self._write(self._upsert_profile, rows)
        return len(rows)

    def _write(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._engine.begin() as connection:
            for chunk in _chunks(rows):
                connection.execute(statement, chunk)

    def bars_between(self, symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        """Stored bars with ``start_ns <= open_ts < end_ns``, oldest first."""
        query = (
            select(bars_1m)
            .where(
                bars_1m.c.symbol == symbol,
                bars_1m.c.open_ts >= start_ns,
                bars_1m.c.open_ts < end_ns,
            )
            .order_by(bars_1m.c.open_ts)
        )
        with self._engine.connect() as connection:
            return [_row_bar(row) for row in connection.execute(query)]

    def profiles(self, symbol: str, since_ns: int) -> list[ProfileUpdate]:
        """Stored profiles of sessions that end after ``since_ns`` (so still open or recent),
        ordered by session start, then scope and session id."""
        c = session_profiles.c
        query = (
            select(session_profiles)
            .where(c.symbol == symbol, c.session_end > since_ns)
            .order_by(c.session_start, c.scope, c.session_id)
        )
        with self._engine.connect() as connection:
            return [_row_profile(row) for row in connection.execute(query)]

    def last_bar(self, symbol: str, closed_by_ns: int) -> Bar | None:
        """The latest stored bar with ``close_ts <= closed_by_ns``, or None."""
        query = (
            select(bars_1m)
            .where(bars_1m.c.symbol == symbol, bars_1m.c.close_ts <= closed_by_ns)
            .order_by(bars_1m.c.open_ts.desc())
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _row_bar(row)
