"""Analytics: closed 1-minute bars with footprints, and session / composite volume profiles.

Revision ID: 0002_analytics
Revises: 0001_baseline
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002_analytics"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "2"
PREVIOUS_SCHEMA_VERSION = "1"

# The schema is spelled out here rather than imported from ofcommon.tables: a revision must keep
# creating what it created when it shipped, whatever tables.py becomes later.


def _set_schema_version(version: str) -> None:
    op.execute(
        sa.text(
            "UPDATE of_meta SET value = :version, updated_at = now() WHERE key = 'schema_version'"
        ).bindparams(version=version)
    )


def upgrade() -> None:
    op.create_table(
        "bars_1m",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("open_ts", sa.BigInteger(), nullable=False),
        sa.Column("close_ts", sa.BigInteger(), nullable=False),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("buy_volume", sa.Double(), nullable=False),
        sa.Column("sell_volume", sa.Double(), nullable=False),
        sa.Column("delta", sa.Double(), nullable=False),
        sa.Column("delta_min", sa.Double(), nullable=False),
        sa.Column("delta_max", sa.Double(), nullable=False),
        sa.Column("trades", sa.Integer(), nullable=False),
        sa.Column("vwap", sa.Double(), nullable=False),
        sa.Column("poc", sa.Double(), nullable=False),
        sa.Column("footprint", JSONB(), nullable=False),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "open_ts", name="pk_bars_1m"),
    )
    op.create_index("ix_bars_1m_open_ts", "bars_1m", ["open_ts"])
    op.create_table(
        "session_profiles",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("session_start", sa.BigInteger(), nullable=False),
        sa.Column("session_end", sa.BigInteger(), nullable=False),
        sa.Column("poc", sa.Double(), nullable=False),
        sa.Column("vah", sa.Double(), nullable=False),
        sa.Column("val", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("shape", sa.Text(), nullable=False),
        sa.Column("rows", JSONB(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("ts_event", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "scope", "session_id", name="pk_session_profiles"),
    )
    op.create_index("ix_session_profiles_symbol_end", "session_profiles", ["symbol", "session_end"])
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    op.drop_index("ix_session_profiles_symbol_end", table_name="session_profiles")
    op.drop_table("session_profiles")
    op.drop_index("ix_bars_1m_open_ts", table_name="bars_1m")
    op.drop_table("bars_1m")
    _set_schema_version(PREVIOUS_SCHEMA_VERSION)
