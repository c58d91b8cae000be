"""Bar analytics: delta at the extremes, cumulative deltas, imbalances, stacked runs, unfinished
auctions and big trades of each closed 1-minute bar, and the nodes of each stored profile (wire
version 2 of ``Bar`` and ``ProfileUpdate``).

Revision ID: 0003_bar_analytics
Revises: 0002_analytics
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003_bar_analytics"
down_revision: str | None = "0002_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "3"
PREVIOUS_SCHEMA_VERSION = "2"

# Spelled out rather than imported from ofcommon.tables (a revision must not drift). The server
# defaults give rows stored before this revision the values of a bar without analytics.
_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any], str], ...] = (
    ("delta_at_high", sa.Double(), "0"),
    ("delta_at_low", sa.Double(), "0"),
    ("cvd", sa.Double(), "0"),
    ("cvd_total", sa.Double(), "0"),
    ("imbalances", JSONB(), "[]"),
    ("stacked", JSONB(), "[]"),
    ("unfinished_high", sa.Boolean(), "false"),
    ("unfinished_low", sa.Boolean(), "false"),
    ("big_trades", JSONB(), "[]"),
    ("gapped", sa.Boolean(), "false"),
)
# The profile nodes of ProfileUpdate (wire version 2).
_PROFILE_COLUMNS: tuple[str, ...] = ("hvn", "lvn", "single_prints", "naked_pocs")


def _set_schema_version(version: str) -> None:
    op.execute(
        sa.text(
            "UPDATE of_meta SET value = :version, updated_at = now() WHERE key = 'schema_version'"
        ).bindparams(version=version)
    )


def upgrade() -> None:
    for name, type_, default in _COLUMNS:
        op.add_column("bars_1m", sa.Column(name, type_, nullable=False, server_default=default))
    for name in _PROFILE_COLUMNS:
        op.add_column(
            "session_profiles", sa.Column(name, JSONB(), nullable=False, server_default="[]")
        )
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    for name in reversed(_PROFILE_COLUMNS):
        op.drop_column("session_profiles", name)
    for name, _, _ in reversed(_COLUMNS):
        op.drop_column("bars_1m", name)
    _set_schema_version(PREVIOUS_SCHEMA_VERSION)
