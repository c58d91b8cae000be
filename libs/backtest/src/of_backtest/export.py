"""The backtest's files: journal tables and pattern signals as CSV and Parquet, the closed 1-minute
bars with their footprints as Parquet, written as they close. Same inputs, same bytes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from of_aggregator.scoring import grade
from of_backtest.pipeline import Collected, Journal
from ofcommon.entry_ids import EntryId
from ofcommon.messages import Bar

_INT: Final = pa.int64()
_F: Final = pa.float64()
_S: Final = pa.string()

EVENTS: Final = pa.schema(
    [
        ("symbol", _S),
        ("event_id", _S),
        ("trade_id", _S),
        ("ts_event", _INT),
        ("kind", _S),
        ("direction", _INT),
        ("price", _F),
        ("stop", _F),
        ("target", _F),
        ("reason", _S),
        ("score", _F),
        ("grade", _S),
        ("signals", _S),
        ("level_kind", _S),
        ("level_price", _F),
        ("pnl_ticks", _F),
        ("r_multiple", _F),
        ("mae_ticks", _F),
        ("mfe_ticks", _F),
    ]
)
TRADES: Final = pa.schema(
    [
        ("symbol", _S),
        ("trade_id", _S),
        ("direction", _INT),
        ("entry_ts", _INT),
        ("entry_price", _F),
        ("stop", _F),
        ("target", _F),
        ("stops", _S),
        ("score", _F),
        ("grade", _S),
        ("level_kind", _S),
        ("level_price", _F),
        ("signals", _S),
        ("exit_ts", _INT),
        ("exit_price", _F),
        ("exit_reason", _S),
        ("pnl_ticks", _F),
        ("r_multiple", _F),
        ("mae_ticks", _F),
        ("mfe_ticks", _F),
    ]
)
BIAS: Final = pa.schema(
    [
        ("symbol", _S),
        ("session_id", _S),
        ("ts_event", _INT),
        ("direction", _INT),
        ("shape", _S),
        ("confidence", _F),
        ("poc", _F),
        ("vah", _F),
        ("val", _F),
        ("warnings", _S),
        ("levels", _S),
        ("merged_val", _F),
        ("merged_vah", _F),
    ]
)
SIGNALS: Final = pa.schema(
    [
        ("symbol", _S),
        ("entry_id", _S),
        ("signal_id", _S),
        ("ts_event", _INT),
        ("pattern", _S),
        ("direction", _INT),
        ("price", _F),
        ("strength", _F),
        ("grade", _S),
        ("timeframe", _S),
        ("evidence", _S),
    ]
)
_FOOTPRINT: Final = pa.list_(
    pa.struct([("price", _F), ("bid_volume", _F), ("ask_volume", _F), ("trades", _INT)])
)
BARS: Final = pa.schema(
    [
        ("symbol", _S),
        ("entry_id", _S),
        ("timeframe", _S),
        ("open_ts", _INT),
        ("close_ts", _INT),
        ("open", _F),
        ("high", _F),
        ("low", _F),
        ("close", _F),
        ("volume", _F),
        ("buy_volume", _F),
        ("sell_volume", _F),
        ("delta", _F),
        ("delta_min", _F),
        ("delta_max", _F),
        ("trades", _INT),
        ("vwap", _F),
        ("poc", _F),
        ("cvd", _F),
        ("cvd_total", _F),
        ("gapped", pa.bool_()),
        ("rev", _INT),
        ("footprint", _FOOTPRINT),
        ("imbalances", _S),
        ("stacked", _S),
    ]
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _flat(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> list[dict[str, Any]]:
    """Rows with the JSON columns (lists, dicts) as compact JSON text."""
    text = {f.name for f in schema if f.type == _S}
    return [
        {k: _json(v) if k in text and isinstance(v, list | dict) else v for k, v in r.items()}
        for r in rows
    ]


def signal_rows(collected: dict[str, Collected]) -> list[dict[str, Any]]:
    rows = []
    for symbol in sorted(collected):
        for entry_id, s in collected[symbol].signals:
            rows.append(
                {
                    "symbol": symbol,
                    "entry_id": str(entry_id),
                    "signal_id": s.signal_id,
                    "ts_event": s.ts_event,
                    "pattern": s.pattern,
                    "direction": int(s.direction),
                    "price": s.price,
                    "strength": s.strength,
                    "grade": grade(s.strength),
                    "timeframe": s.timeframe,
                    "evidence": dict(s.details),
                }
            )
    return rows


def bar_row(symbol: str, entry_id: EntryId, b: Bar) -> dict[str, Any]:
    """One closed bar as a row of ``BARS`` (the JSON columns still as lists)."""
    return {
        "symbol": symbol,
        "entry_id": str(entry_id),
        **{f: getattr(b, f) for f in BARS.names[2:-3]},
        "footprint": [
            {
                "price": r.price,
                "bid_volume": r.bid_volume,
                "ask_volume": r.ask_volume,
                "trades": r.trades,
            }
            for r in b.footprint
        ],
        "imbalances": [[i.price, int(i.side), i.ratio] for i in b.imbalances],
        "stacked": [[int(s.side), s.low, s.high, s.rows] for s in b.stacked],
    }


class BarList:
    """Closed bars kept in memory as rows (tests, comparisons)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, symbol: str, entry_id: EntryId, bar: Bar) -> None:
        self.rows.append(bar_row(symbol, entry_id, bar))


class BarFile:
    """Closed bars written to ``path`` (Parquet) as they close, ``group`` bars per row group, so a
    long backtest does not hold its footprints in memory. Rows are in the order the bars closed
    (per instrument by open time; instruments interleave in row groups)."""

    def __init__(self, path: Path, group: int = 512) -> None:
        self.path = path
        self.group = group
        self.count = 0
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None

    def add(self, symbol: str, entry_id: EntryId, bar: Bar) -> None:
        self._rows.append(bar_row(symbol, entry_id, bar))
        self.count += 1
        if len(self._rows) >= self.group:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, BARS, compression="zstd")
        table = pa.Table.from_pylist(_flat(self._rows, BARS), schema=BARS)
        self._writer.write_table(table)
        self._rows = []

    def close(self) -> Path:
        if self._rows or self._writer is None:
            self._flush()
        assert self._writer is not None
        self._writer.close()
        return self.path


def _csv(path: Path, rows: Sequence[dict[str, Any]], schema: pa.Schema) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(schema.names)
        for r in rows:
            w.writerow(["" if r[n] is None else r[n] for n in schema.names])


def _parquet(path: Path, rows: Sequence[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(list(rows), schema=schema)
    pq.write_table(table, path, compression="zstd")


def write_all(out: Path, journal: Journal, collected: dict[str, Collected]) -> list[Path]:
    """The journal and signal tables into ``out`` (the bars go as they close: ``BarFile``);
    returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tables = (
        ("events", journal.events, EVENTS),
        ("trades", journal.trades, TRADES),
        ("bias", journal.bias, BIAS),
        ("signals", signal_rows(collected), SIGNALS),
    )
    for name, rows, schema in tables:
        flat = _flat(rows, schema)
        for suffix, write in ((".csv", _csv), (".parquet", _parquet)):
            path = out / f"{name}{suffix}"
            write(path, flat, schema)
            written.append(path)
    return written
