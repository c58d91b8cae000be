"""``ofx run``: settings, logging, Redis, metrics, health and signals around a service.

SIGTERM or SIGINT sets the stop event; the service checkpoints and releases its leases; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ofcommon import logs, metrics
from ofcommon.health import HealthReporter
from ofcommon.service import Service, ServiceContext, known_setting_fields
from ofcommon.settings import BaseSettings, SettingsError, load_settings

log = logging.getLogger("ofcommon.runner")


def connect(settings: BaseSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url.get(),
        decode_responses=False,
        health_check_interval=10,
        socket_keepalive=True,
        max_connections=512,
        socket_timeout=settings.socket_timeout_s(),
    )


async def wait_for_redis(
    redis: aioredis.Redis, stop: asyncio.Event, timeout_s: float = 120
) -> bool:
    delay = 0.2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not stop.is_set():
        try:
            await redis.ping()
            return True
        except (OSError, RedisError) as err:
            if loop.time() > deadline:
                raise
            log.warning("waiting for Redis: %s", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return False


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("parent process %d is gone; stopping", pid)
            stop.set()
            return
        await asyncio.sleep(1.0)


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()


async def serve(service: Service[Any], settings: BaseSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = connect(settings)
    ctx: ServiceContext[Any] = ServiceContext(
        name=service.name,
        settings=settings,
        redis=redis,
        worker_id=settings.resolved_worker_id(),
        stop=stop,
    )
    health = HealthReporter(
        redis,
        service=service.name,
        worker_id=ctx.worker_id,
        ttl_s=settings.health_ttl_s,
        status=lambda: dict(ctx.status),
    )
    helpers: list[asyncio.Task[None]] = []
    code = 0
    try:
        if not await wait_for_redis(redis, stop):
            return 0
        metrics.serve(settings.metrics_port)
        helpers.append(asyncio.create_task(health.run(stop), name="health"))
        if settings.parent_pid:
            helpers.append(asyncio.create_task(_watch_parent(settings.parent_pid, stop)))
        # Which Redis, for the operator: the URL's password is masked (and scrubbed anyway).
        log.info("started", extra={"pid": os.getpid(), "redis": settings.redis_url.redacted()})
        main: asyncio.Future[None] = asyncio.ensure_future(service.main(ctx))
        stopper: asyncio.Future[None] = asyncio.ensure_future(_until(stop))
        await asyncio.wait([main, stopper], return_when=asyncio.FIRST_COMPLETED)
        if not main.done():
            try:
                await asyncio.wait_for(main, settings.shutdown_timeout_s)
            except TimeoutError:
                log.error("did not stop within %.0f s", settings.shutdown_timeout_s)
                code = 1
        stopper.cancel()
        if main.done() and not main.cancelled() and main.exception() is not None:
            log.error("service failed", exc_info=main.exception())
            code = 1
        elif not stop.is_set():
            log.info("service main returned")
    finally:
        stop.set()
        for task in helpers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await health.clear()
        await redis.aclose()
    log.info("stopped", extra={"exit_code": code})
    return code


def run(service: Service[Any]) -> int:
    """Run ``service`` until SIGTERM/SIGINT; the process exit code."""
    try:
        known = known_setting_fields(service.settings_type, os.environ)
        settings = load_settings(service.settings_type, known=known)
    except SettingsError as err:
        print(f"ofx run {service.name}: configuration error: {err}", file=sys.stderr)
        return 2
    logs.configure(
        service.name,
        settings.resolved_worker_id(),
        level=settings.log_level,
        fmt=settings.log_format,
    )
    return asyncio.run(serve(service, settings))
