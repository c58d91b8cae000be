"""Baseline: the of_meta key/value table that records the schema and wire versions.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bumped by every revision that changes the schema in a way readers must know about.
SCHEMA_VERSION = "1"


def upgrade() -> None:
    op.create_table(
        "of_meta",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    op.execute(
        sa.text("INSERT INTO of_meta (key, value) VALUES ('schema_version', :version)").bindparams(
            version=SCHEMA_VERSION
        )
    )


def downgrade() -> None:
    op.drop_table("of_meta")
