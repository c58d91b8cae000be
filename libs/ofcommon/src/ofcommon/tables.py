"""SQLAlchemy Core tables of the schema, shared by every stage that touches it.

Analytics and the aggregator (its journal) write these rows and the api reads them; migrations
0002_analytics and later build them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "bars_1m",
    "journal_bias",
    "journal_events",
    "journal_signals",
    "journal_trades",
    "metadata",
    "session_profiles",
]

metadata = MetaData()

# Closed 1-minute bars only: higher timeframes are composed from these on read, so storing them
# would only duplicate data that could drift. Timestamps are int nanoseconds (UTC) as on the wire.
bars_1m = Table(
    "bars_1m",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("open_ts", BigInteger, nullable=False),
    Column("close_ts", BigInteger, nullable=False),
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False),
    Column("buy_volume", Double, nullable=False),
    Column("sell_volume", Double, nullable=False),
    Column("delta", Double, nullable=False),
    Column("delta_min", Double, nullable=False),
    Column("delta_max", Double, nullable=False),
    Column("trades", Integer, nullable=False),
    Column("vwap", Double, nullable=False),
    Column("poc", Double, nullable=False),
    # [[price, bid_volume, ask_volume, trades], ...]: FootprintRow's positional wire form
    Column("footprint", JSONB, nullable=False),
    Column("rev", Integer, nullable=False),
    # Footprint analytics (0003_bar_analytics); the server defaults fill rows written before it.
    Column("delta_at_high", Double, nullable=False, server_default="0"),
    Column("delta_at_low", Double, nullable=False, server_default="0"),
    Column("cvd", Double, nullable=False, server_default="0"),
    Column("cvd_total", Double, nullable=False, server_default="0"),
    # [[price, side, ratio], ...]: ImbalanceRow, with an infinite ratio as null (JSON has no inf)
    Column("imbalances", JSONB, nullable=False, server_default="[]"),
    # [[side, low, high, rows], ...]: StackedRun
    Column("stacked", JSONB, nullable=False, server_default="[]"),
    Column("unfinished_high", Boolean, nullable=False, server_default="false"),
    Column("unfinished_low", Boolean, nullable=False, server_default="false"),
    # [[ts_event, price, size, side], ...]: BigPrint
    Column("big_trades", JSONB, nullable=False, server_default="[]"),
    Column("gapped", Boolean, nullable=False, server_default="false"),
    PrimaryKeyConstraint("symbol", "open_ts", name="pk_bars_1m"),
)

session_profiles = Table(
    "session_profiles",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("session_start", BigInteger, nullable=False),
    Column("session_end", BigInteger, nullable=False),
    Column("poc", Double, nullable=False),
    Column("vah", Double, nullable=False),
    Column("val", Double, nullable=False),
    Column("volume", Double, nullable=False),
    Column("shape", Text, nullable=False),
    # [[price, volume], ...]: ProfileUpdate.rows
    Column("rows", JSONB, nullable=False),
    Column("final", Boolean, nullable=False),
    # event time of the update stored in this row: decides which of two updates is newer
    Column("ts_event", BigInteger, nullable=False),
    # [price, ...]: ProfileUpdate.hvn / lvn / single_prints / naked_pocs (migration 0003)
    Column("hvn", JSONB, nullable=False, server_default="[]"),
    Column("lvn", JSONB, nullable=False, server_default="[]"),
    Column("single_prints", JSONB, nullable=False, server_default="[]"),
    Column("naked_pocs", JSONB, nullable=False, server_default="[]"),
    # ProfileUpdate.volume_kind (SizeKind: 0 real volume, 1 tick volume; migration 0004)
    Column("volume_kind", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("symbol", "scope", "session_id", name="pk_session_profiles"),
)

# Rebuild reads "the sessions of this symbol that end after T"; the primary key cannot serve it.
Index("ix_session_profiles_symbol_end", session_profiles.c.symbol, session_profiles.c.session_end)
# Cross-symbol time-range reads (the api's "all bars in this window"); per-symbol ranges use the
# primary key (symbol, open_ts).
Index("ix_bars_1m_open_ts", bars_1m.c.open_ts)

# --- the aggregator's journal (migration 0005_journal; docs/aggregator.md "Journal") ----------

# Every TradeEvent the aggregator published (its signals: watches, entries, rejections, stop
# moves, warnings, exits), keyed by its deterministic id.
journal_events = Table(
    "journal_events",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("trade_id", Text, nullable=False),
    Column("ts_event", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("direction", Integer, nullable=False),
    Column("price", Double, nullable=False),
    Column("stop", Double, nullable=False),
    Column("target", Double, nullable=False),
    Column("reason", Text, nullable=False),
    Column("score", Double, nullable=False),
    Column("grade", Text, nullable=False),
    Column("signals", JSONB, nullable=False),
    Column("level_kind", Text, nullable=False),
    Column("level_price", Double, nullable=False),
    Column("pnl_ticks", Double, nullable=True),
    Column("r_multiple", Double, nullable=True),
    Column("mae_ticks", Double, nullable=True),
    Column("mfe_ticks", Double, nullable=True),
    PrimaryKeyConstraint("symbol", "event_id", name="pk_journal_events"),
)
Index("ix_journal_events_trade", journal_events.c.symbol, journal_events.c.trade_id)

# One row per trade: written at its entry, completed at its exit. ``stops`` lists every stop,
# the initial one first, as [ts_event, stop, kind] (kind entry / breakeven / trail).
journal_trades = Table(
    "journal_trades",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("trade_id", Text, nullable=False),
    Column("direction", Integer, nullable=False),
    Column("entry_ts", BigInteger, nullable=False),
    Column("entry_price", Double, nullable=False),
    Column("stop", Double, nullable=False),
    Column("target", Double, nullable=False),
    Column("stops", JSONB, nullable=False),
    Column("score", Double, nullable=False),
    Column("grade", Text, nullable=False),
    Column("level_kind", Text, nullable=False),
    Column("level_price", Double, nullable=False),
    Column("signals", JSONB, nullable=False),
    Column("exit_ts", BigInteger, nullable=True),
    Column("exit_price", Double, nullable=True),
    Column("exit_reason", Text, nullable=True),
    Column("pnl_ticks", Double, nullable=True),
    Column("r_multiple", Double, nullable=True),
    Column("mae_ticks", Double, nullable=True),
    Column("mfe_ticks", Double, nullable=True),
    PrimaryKeyConstraint("symbol", "trade_id", name="pk_journal_trades"),
)
Index("ix_journal_trades_entry_ts", journal_trades.c.entry_ts)

# The daily bias: one row per instrument and completed session.
journal_bias = Table(
    "journal_bias",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("ts_event", BigInteger, nullable=False),
    Column("direction", Integer, nullable=False),
    Column("shape", Text, nullable=False),
    Column("confidence", Double, nullable=False),
    Column("poc", Double, nullable=False),
    Column("vah", Double, nullable=False),
    Column("val", Double, nullable=False),
    Column("warnings", JSONB, nullable=False),
    Column("levels", JSONB, nullable=False),
    Column("merged_val", Double, nullable=False),
    Column("merged_vah", Double, nullable=False),
    PrimaryKeyConstraint("symbol", "session_id", name="pk_journal_bias"),
)

# Every pattern signal the aggregator consumed (migration 0006_journal_signals), keyed by its
# deterministic id; ``journal_trades.signals`` names those behind an entry.
journal_signals = Table(
    "journal_signals",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("signal_id", Text, nullable=False),
    Column("ts_event", BigInteger, nullable=False),
    Column("pattern", Text, nullable=False),
    Column("direction", Integer, nullable=False),
    Column("price", Double, nullable=False),
    Column("strength", Double, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    PrimaryKeyConstraint("symbol", "signal_id", name="pk_journal_signals"),
)
Index("ix_journal_signals_ts", journal_signals.c.symbol, journal_signals.c.ts_event)
