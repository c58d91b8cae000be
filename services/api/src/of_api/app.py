"""The FastAPI application: routes, /ws, /healthz, /metrics, JSON errors, closed CORS, /docs.

``create_app(ctx)`` builds it over an ``ApiContext``; the service serves it with uvicorn.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from of_api import errors, routes, web, ws
from of_api.auth import require_token
from of_api.context import ApiContext

DESCRIPTION = """OrderFlow's REST API and WebSocket over the live pipeline (Redis Streams) and its
PostgreSQL history. Every route but `/healthz` needs `Authorization: Bearer <OF_API_TOKEN>`;
the WebSocket `/ws` takes the token in that header or as its first message
`{"op": "auth", "token": "..."}`. Errors are JSON: `{"error": reason, "status": code}`.
See docs/api.md."""


class KeepRawSend:
    """Keeps the server's own ASGI ``send`` of a WebSocket in its scope: closing a client that
    reads nothing needs the connection's transport, which middleware wrappers hide."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[ws.RAW_SEND] = send
        await self.app(scope, receive, send)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="OrderFlow API",
        version="1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    app.state.token = ctx.settings.api_token.get()
    origins = [o.strip() for o in ctx.settings.api_cors_origins.split(",") if o.strip()]
    if origins:  # closed by default: no CORS headers at all
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(KeepRawSend)
    errors.install(app)

    async def unavailable(request: Request, exc: Exception) -> Response:
        what = "PostgreSQL" if isinstance(exc, OperationalError) else "Redis"
        from fastapi.responses import JSONResponse

        return JSONResponse(errors.body(503, f"{what} unavailable: {type(exc).__name__}"), 503)

    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(RedisError, unavailable)
    app.add_exception_handler(OSError, unavailable)

    @app.get("/healthz", summary="Liveness (no token needed)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "hub_ready": ctx.hub.ready.is_set()}

    @app.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(require_token)])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(routes.router)
    app.add_api_websocket_route("/ws", ws.endpoint)
    web.install(app)
    served = [i.symbol for i in ctx.served]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    for param in op.get("parameters", []):
                        if param.get("name") == "symbol" and param.get("in") == "path":
                            # the instruments this API serves; any other is a 404 with a reason
                            param["schema"] = {"type": "string", "enum": served}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
