"""PostgreSQL URLs, stores and schema migrations for every OrderFlow component.

Normalises database URLs to psycopg 3, gives stores their engine (``EngineStore``) and runs the
Alembic revisions shipped in ofcommon.migrations.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Engine, make_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "EngineStore",
    "alembic_config",
    "current_revision",
    "migrate",
    "migrations_dir",
    "to_sync_url",
]

SYNC_DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})


def to_sync_url(url: str) -> str:
    """Rewrite any PostgreSQL URL (postgres://, postgresql://, +asyncpg, +psycopg2) to psycopg 3.

    psycopg 3 serves both sync and asyncio engines, so this one URL fits create_engine and
    create_async_engine alike. Query parameters (e.g. ?host=/socket/dir) are kept.
    """
    parsed = make_url(url)
    scheme = parsed.drivername.partition("+")[0]
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername=SYNC_DRIVER).render_as_string(hide_password=False)


def migrations_dir() -> Path:
    """The Alembic script directory inside the installed ofcommon package."""
    path = Path(str(files("ofcommon") / "migrations"))
    if not (path / "env.py").is_file():
        raise FileNotFoundError(f"ofcommon migrations are missing from the package: {path}")
    return path


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config built in code, e.g. for command.revision(alembic_config(), "msg").

    The URL travels in Config.attributes rather than as an ini option, where ConfigParser
    would read a %-escaped password as an interpolation.
    """
    # Alembic is imported on use: it costs ~0.5 s that URL helpers and services need not pay.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["sqlalchemy.url"] = to_sync_url(url)
    return config


def migrate(url: str) -> None:
    """Upgrade the database to the newest revision; a no-op when it is already there."""
    from alembic import command

    config = alembic_config(url)
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration revisions found")
    return head


class EngineStore:
    """A synchronous PostgreSQL store owning one pooled engine (call it via asyncio.to_thread);
    a context manager that disposes the engine on exit."""

    def __init__(self, url: str, *, pool_size: int = 2) -> None:
        self._engine: Engine = create_engine(
            to_sync_url(url), pool_size=pool_size, pool_pre_ping=True
        )

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
