"""Alembic entry point: runs the revisions in versions/ against one PostgreSQL database.

Online mode uses the connection ofcommon.db passes in, or builds one from sqlalchemy.url.
"""

from __future__ import annotations

import zlib

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

# One fixed key for every OrderFlow migrator: services or tests that start together must not
# race to create alembic_version or apply the same revision twice.
MIGRATION_LOCK_KEY = zlib.crc32(b"orderflow:migrations")


def _url() -> str:
    url = context.config.attributes.get("sqlalchemy.url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL: use ofcommon.db.migrate(url)")
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until the migration transaction ends; the loser then sees the new head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_on(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
