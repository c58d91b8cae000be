"""The local stack's embedded Redis and PostgreSQL: started side by side, watched, restarted.

A dead server is restarted on its port (the services keep their URLs); one that keeps dying
stops the stack with the reason instead of leaving the services to crash-loop against it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ofcommon.embedded import EmbeddedServer

__all__ = ["MAX_SERVER_RESTARTS", "ServerFailure", "StackServers", "describe_exit"]

MAX_SERVER_RESTARTS: Final = 3
"""Restarts of one server allowed within RESTART_WINDOW_S before the stack gives up."""
RESTART_WINDOW_S: Final = 60.0
_RESTART_DELAYS_S: Final = (0.5, 1.0, 2.0)

Say = Callable[[str], None]


class ServerFailure(RuntimeError):
    """An embedded server is down for good; the message says which and why."""


@dataclass
class _Watched:
    server: EmbeddedServer
    restart: Callable[[int], EmbeddedServer]
    restarts: deque[float] = field(default_factory=deque)


class StackServers:
    """Owns the embedded servers of one `ofx up`."""

    def __init__(self, var_dir: Path, *, info: Say, error: Say) -> None:
        self._var_dir = var_dir
        self._info = info
        self._error = error
        self._watched: dict[str, _Watched] = {}

    def start(self, *, redis: bool, postgres: bool) -> tuple[str | None, str | None]:
        """Start the servers asked for, both at once; their URLs (None where not started)."""
        # Imported here: psycopg and redis-py load while the caller already handles Ctrl-C.
        from ofcommon.embedded import EmbeddedServerError, start_postgres, start_redis

        redis_dir, pg_dir = self._var_dir / "redis", self._var_dir / "postgres"
        jobs: dict[str, Callable[[int | None], EmbeddedServer]] = {}
        if redis:
            jobs["redis"] = lambda port: start_redis(redis_dir, port=port)
        if postgres:
            jobs["postgres"] = lambda port: start_postgres(pg_dir, port=port)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(job, None) for name, job in jobs.items()}
        failures: list[str] = []
        for name, future in futures.items():
            try:
                server = future.result()
            except Exception as exc:  # a failure of one must not leak the other
                failures.append(f"{name}: {exc}")
                continue
            self._watched[name] = _Watched(server, jobs[name])
            self._info(f"{name:<10} {server.url}  (data in {server.data_dir})")
        if failures:
            raise EmbeddedServerError("; ".join(failures))
        return self.url("redis"), self.url("postgres")

    def url(self, name: str) -> str | None:
        watched = self._watched.get(name)
        return None if watched is None else watched.server.url

    def watch(self, now: float) -> None:
        """Restart any server that died; raise ServerFailure when one cannot be brought back."""
        for name, watched in self._watched.items():
            if watched.server.exited:
                self._revive(name, watched, now)

    def _revive(self, name: str, watched: _Watched, now: float) -> None:
        dead = watched.server
        dead.stop()  # clears what the server left in its process group, then reaps it
        what = describe_exit(dead.exit_code)
        while watched.restarts and now - watched.restarts[0] >= RESTART_WINDOW_S:
            watched.restarts.popleft()
        if len(watched.restarts) >= MAX_SERVER_RESTARTS:
            raise ServerFailure(
                f"{name} (pid {dead.pid}) died ({what}) {MAX_SERVER_RESTARTS + 1} times within"
                f" {RESTART_WINDOW_S:.0f}s; stopping the stack (see {dead.log_path})"
            )
        from ofcommon.embedded import EmbeddedServerError

        watched.restarts.append(now)
        self._error(f"{name} (pid {dead.pid}) died ({what}); restarting it on port {dead.port}")
        for delay in (*_RESTART_DELAYS_S, None):
            try:
                watched.server = watched.restart(dead.port)
                break
            except EmbeddedServerError as exc:
                # The killed server's last processes may still hold its port or, for
                # Postgres, its shared memory for a moment: try again before giving up.
                if delay is None:
                    raise ServerFailure(
                        f"{name} died ({what}) and did not restart on port {dead.port}: {exc}"
                    ) from exc
                time.sleep(delay)
        self._info(f"{name} restarted (pid {watched.server.pid}, {watched.server.url})")

    def stop_all(self) -> bool:
        """Stop every server, Redis last (services flush to it); True if any was running."""
        order = [n for n in ("postgres", "redis") if n in self._watched]
        for name in order:
            self._watched[name].server.stop()
        self._watched.clear()
        return bool(order)


def describe_exit(code: int | None) -> str:
    """A process's exit for an operator: "exit code 3", "killed by SIGKILL"."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
