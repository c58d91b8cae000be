"""Embedded Redis and PostgreSQL start real servers and stop them without leaving a process.

Covers ofcommon.embedded and the Alembic baseline applied through ofcommon.db.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from ofcommon.db import current_revision, head_revision, migrate, migrations_dir, to_sync_url
from ofcommon.embedded import EmbeddedServer, start_postgres, start_redis


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` no longer runs (a zombie awaiting its new parent's reap counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _group(server: EmbeddedServer) -> list[int]:
    """The server and every process it forked (Postgres backends and auxiliaries)."""
    root = psutil.Process(server.pid)
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.redis
def test_redis_streams_roundtrip_and_clean_stop(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        assert server.url.startswith("redis://127.0.0.1:")
        assert psutil.Process(server.pid).cwd() == str((tmp_path / "redis").resolve())
        client = redis.Redis.from_url(server.url)
        try:
            entry_id = client.xadd("of:{BTCUSDT}:trades", {"m": b"\x01\x02"})
            client.xgroup_create("of:{BTCUSDT}:trades", "analytics", id="0")
            read = client.xreadgroup("analytics", "BTCUSDT", {"of:{BTCUSDT}:trades": ">"}, count=10)
            assert read == [[b"of:{BTCUSDT}:trades", [(entry_id, {b"m": b"\x01\x02"})]]]
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()
        pids = _group(server)
    finally:
        server.stop()
    assert not server.running
    assert all(_gone(pid) for pid in pids)
    server.stop()  # idempotent


@pytest.mark.redis
def test_redis_context_manager_port_and_no_aof(tmp_path: Path) -> None:
    with start_redis(tmp_path, appendonly=False) as first:
        port = first.port
    assert _gone(first.pid)
    # A fixed port is honoured (the one just released is free again).
    with start_redis(tmp_path, port=port, appendonly=False) as server:
        assert server.port == port
        client = redis.Redis.from_url(server.url)
        try:
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
    assert _gone(server.pid)


@pytest.mark.postgres
def test_postgres_migrate_is_idempotent_and_stop_is_clean(free_tmp: Path) -> None:
    tmp_path = free_tmp
    server = start_postgres(tmp_path / "pg")
    try:
        assert server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert server.url.endswith("/orderflow")
        assert to_sync_url(server.url) == server.url
        assert current_revision(server.url) is None
        migrate(server.url)
        assert current_revision(server.url) == head_revision()
        migrate(server.url)  # a second run changes nothing
        assert current_revision(server.url) == head_revision()
        with psycopg.connect(_psycopg_dsn(server.url)) as conn:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'of_meta' ORDER BY ordinal_position"
            ).fetchall()
            rows = conn.execute("SELECT key, value FROM of_meta").fetchall()
        assert columns == [
            ("key", "text"),
            ("value", "text"),
            ("updated_at", "timestamp with time zone"),
        ]
        assert len(rows) == 1
        assert rows[0][0] == "schema_version"
        assert int(rows[0][1]) >= 1
        pids = _group(server)
        assert len(pids) > 1  # postmaster plus its auxiliaries
    finally:
        server.stop()
    assert not server.running
    assert all(_gone(pid) for pid in pids)
    postgres_left = [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(proc.info["cmdline"] or [])
    ]
    assert postgres_left == []


@pytest.mark.postgres
def test_postgres_restart_keeps_data(free_tmp: Path) -> None:
    tmp_path = free_tmp
    with start_postgres(tmp_path) as first:
        migrate(first.url)
    assert _gone(first.pid)
    with start_postgres(tmp_path) as second:
        assert current_revision(second.url) == head_revision()
    assert _gone(second.pid)


def test_to_sync_url_normalises_schemes() -> None:
    assert to_sync_url("postgres://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert to_sync_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert to_sync_url("postgresql+asyncpg://u@h/db") == "postgresql+psycopg://u@h/db"
    socket_url = to_sync_url("postgresql://postgres:@/postgres?host=/tmp/pg")
    assert socket_url.startswith("postgresql+psycopg://postgres:@/postgres?host=")
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_sync_url("mysql://u@h/db")


def test_migrations_ship_inside_the_package() -> None:
    package = files("ofcommon") / "migrations"
    assert (package / "env.py").is_file()
    assert (package / "versions" / "0001_baseline.py").is_file()
    assert migrations_dir() == Path(str(package))
