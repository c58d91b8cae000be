"""Profile volume kind: what a stored session profile counts, real volume or tick volume (quote
changes of a quote-only instrument), as ``ProfileUpdate.volume_kind`` (wire version 3).

Revision ID: 0004_profile_volume_kind
Revises: 0003_bar_analytics
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_profile_volume_kind"
down_revision: str | None = "0003_bar_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = "4"
PREVIOUS_SCHEMA_VERSION = "3"


def _set_schema_version(version: str) -> None:
    op.execute(
        sa.text(
            "UPDATE of_meta SET value = :version, updated_at = now() WHERE key = 'schema_version'"
        ).bindparams(version=version)
    )


def upgrade() -> None:
    # Spelled out, not imported from ofcommon.tables. Every profile stored before this revision
    # counted real volume (tick-count trades were ignored): 0, SizeKind.REAL.
    op.add_column(
        "session_profiles",
        sa.Column("volume_kind", sa.Integer(), nullable=False, server_default="0"),
    )
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    op.drop_column("session_profiles", "volume_kind")
    _set_schema_version(PREVIOUS_SCHEMA_VERSION)
