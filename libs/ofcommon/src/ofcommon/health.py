"""Health reports: a Redis key with a TTL per worker, refreshed while the service is alive.

``ofx check <service>`` (the compose healthcheck) passes when a worker on this host reported lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from ofcommon import keys
from ofcommon.bus import Redis

StatusFn = Callable[[], dict[str, Any]]


class HealthReporter:
    def __init__(
        self, redis: Redis, *, service: str, worker_id: str, ttl_s: float, status: StatusFn
    ) -> None:
        self._redis = redis
        self._key = keys.health(service, worker_id)
        self._service = service
        self._worker_id = worker_id
        self._ttl_ms = int(ttl_s * 1000)
        self._status = status
        self._started = time.time()

    def report(self) -> dict[str, Any]:
        return {
            "service": self._service,
            "worker": self._worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self._started,
            "ts": time.time(),
            **self._status(),
        }

    async def beat(self) -> None:
        await self._redis.set(self._key, json.dumps(self.report()), px=self._ttl_ms)

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._ttl_ms / 3000
        while not stop.is_set():
            # Redis away: the key expires and the check reports it
            with contextlib.suppress(OSError, RedisError):
                await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def clear(self) -> None:
        await self._redis.delete(self._key)


async def check(redis: Redis, service: str, *, host: str | None = None) -> list[dict[str, Any]]:
    """Live health reports of ``service`` on ``host`` (this host by default)."""
    host = host or socket.gethostname()
    found: list[dict[str, Any]] = []
    async for key in redis.scan_iter(match=keys.health_pattern(service), count=200):
        raw = await redis.get(key)
        if raw is None:
            continue
        report = json.loads(raw)
        if report.get("host") == host:
            found.append(report)
    return found
