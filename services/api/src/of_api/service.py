"""The API service's wiring: registry, Redis, PostgreSQL, the stream hub and uvicorn.

It refuses to start without ``OF_API_TOKEN``; SIGTERM stops uvicorn and the hub cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn

from of_api.app import create_app
from of_api.context import ApiContext
from of_api.history import History
from of_api.hub import Hub
from of_api.live import Live
from of_api.settings import ApiSettings
from ofcommon.instruments import load_registry
from ofcommon.service import Service, ServiceContext

log = logging.getLogger("of_api.service")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the runner owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_context(settings: ApiSettings, live: Live, hub: Hub) -> ApiContext:
    registry = load_registry(settings.registry_file or None)
    return ApiContext(
        settings=settings,
        registry=registry,
        served=registry.select(settings.instruments),
        live=live,
        history=History(settings.database_url.get(), pool_size=4),
        hub=hub,
    )


async def main(ctx: ServiceContext[ApiSettings]) -> None:
    settings = ctx.settings
    if not settings.api_token:
        raise SystemExit("OF_API_TOKEN is not set: the API refuses to start without a token")
    registry = load_registry(settings.registry_file or None)
    symbols = [i.symbol for i in registry.select(settings.instruments)]
    hub = Hub(ctx.redis, symbols, read_count=settings.api_read_count)
    api = build_context(settings, Live(ctx.redis), hub)
    app = create_app(api)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        lifespan="off",
        ws_ping_interval=20.0,
        # per-message deflate costs a compression per message and client: fan-out is CPU-bound
        ws_per_message_deflate=False,
    )
    server = _Server(config)
    ctx.status["state"] = "starting"
    await hub.start_positions()
    tasks = [
        asyncio.create_task(server.serve(), name="uvicorn"),
        asyncio.create_task(hub.run(ctx.stop), name="hub"),
        asyncio.create_task(hub.run_stats(ctx.stop, settings.api_stats_ms / 1000), name="stats"),
    ]
    ctx.status.update(state="serving", url=f"http://{settings.api_host}:{settings.api_port}")
    stopper = asyncio.create_task(ctx.stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        server.should_exit = True
        ctx.stop.set()
        for task in tasks[1:]:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(tasks[0], 10)
        stopper.cancel()
        api.history.close()


SERVICE = Service(name="api", settings_type=ApiSettings, main=main, summary="REST/WebSocket API")
