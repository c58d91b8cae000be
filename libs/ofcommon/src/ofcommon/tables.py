"""SQLAlchemy Core tables of the analytics schema, shared by every stage that touches it.

Analytics writes these rows and the api reads them; migrations 0002_analytics and later build them.
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

__all__ = ["bars_1m", "metadata", "session_profiles"]

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
