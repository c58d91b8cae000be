"""Journal: the pattern signals the aggregator consumed (issue 11: "signals, trades, daily bias").

Revision ID: 0006_journal_signals
Revises: 0005_journal
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006_journal_signals"
down_revision: str | None = "0005_journal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "6"
PREVIOUS_SCHEMA_VERSION = "5"

# Spelled out, not imported from ofcommon.tables: a revision keeps creating what it shipped with.


def _set_schema_version(version: str) -> None:
    op.execute(
        sa.text(
            "UPDATE of_meta SET value = :version, updated_at = now() WHERE key = 'schema_version'"
        ).bindparams(version=version)
    )


def upgrade() -> None:
    op.create_table(
        "journal_signals",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("signal_id", sa.Text(), nullable=False),
        sa.Column("ts_event", sa.BigInteger(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("strength", sa.Double(), nullable=False),
        sa.Column("timeframe", sa.Text(), nullable=False),
        sa.Column("details", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "signal_id", name="pk_journal_signals"),
    )
    op.create_index("ix_journal_signals_ts", "journal_signals", ["symbol", "ts_event"])
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    op.drop_index("ix_journal_signals_ts", table_name="journal_signals")
    op.drop_table("journal_signals")
    _set_schema_version(PREVIOUS_SCHEMA_VERSION)
