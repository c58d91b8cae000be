"""Journal: the aggregator's trade events, trades (with every stop move) and daily bias.

Revision ID: 0005_journal
Revises: 0004_profile_volume_kind
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005_journal"
down_revision: str | None = "0004_profile_volume_kind"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "5"
PREVIOUS_SCHEMA_VERSION = "4"

# Spelled out, not imported from ofcommon.tables: a revision keeps creating what it shipped with.


def _set_schema_version(version: str) -> None:
    op.execute(
        sa.text(
            "UPDATE of_meta SET value = :version, updated_at = now() WHERE key = 'schema_version'"
        ).bindparams(version=version)
    )


def upgrade() -> None:
    op.create_table(
        "journal_events",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("ts_event", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("stop", sa.Double(), nullable=False),
        sa.Column("target", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("grade", sa.Text(), nullable=False),
        sa.Column("signals", JSONB(), nullable=False),
        sa.Column("level_kind", sa.Text(), nullable=False),
        sa.Column("level_price", sa.Double(), nullable=False),
        sa.Column("pnl_ticks", sa.Double(), nullable=True),
        sa.Column("r_multiple", sa.Double(), nullable=True),
        sa.Column("mae_ticks", sa.Double(), nullable=True),
        sa.Column("mfe_ticks", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "event_id", name="pk_journal_events"),
    )
    op.create_index("ix_journal_events_trade", "journal_events", ["symbol", "trade_id"])
    op.create_table(
        "journal_trades",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("entry_ts", sa.BigInteger(), nullable=False),
        sa.Column("entry_price", sa.Double(), nullable=False),
        sa.Column("stop", sa.Double(), nullable=False),
        sa.Column("target", sa.Double(), nullable=False),
        sa.Column("stops", JSONB(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("grade", sa.Text(), nullable=False),
        sa.Column("level_kind", sa.Text(), nullable=False),
        sa.Column("level_price", sa.Double(), nullable=False),
        sa.Column("signals", JSONB(), nullable=False),
        sa.Column("exit_ts", sa.BigInteger(), nullable=True),
        sa.Column("exit_price", sa.Double(), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("pnl_ticks", sa.Double(), nullable=True),
        sa.Column("r_multiple", sa.Double(), nullable=True),
        sa.Column("mae_ticks", sa.Double(), nullable=True),
        sa.Column("mfe_ticks", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "trade_id", name="pk_journal_trades"),
    )
    op.create_index("ix_journal_trades_entry_ts", "journal_trades", ["entry_ts"])
    op.create_table(
        "journal_bias",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("ts_event", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("shape", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("poc", sa.Double(), nullable=False),
        sa.Column("vah", sa.Double(), nullable=False),
        sa.Column("val", sa.Double(), nullable=False),
        sa.Column("warnings", JSONB(), nullable=False),
        sa.Column("levels", JSONB(), nullable=False),
        sa.Column("merged_val", sa.Double(), nullable=False),
        sa.Column("merged_vah", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "session_id", name="pk_journal_bias"),
    )
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    op.drop_table("journal_bias")
    op.drop_index("ix_journal_trades_entry_ts", table_name="journal_trades")
    op.drop_table("journal_trades")
    op.drop_index("ix_journal_events_trade", table_name="journal_events")
    op.drop_table("journal_events")
    _set_schema_version(PREVIOUS_SCHEMA_VERSION)
