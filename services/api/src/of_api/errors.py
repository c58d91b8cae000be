"""Every error as a JSON body ``{"error": reason, "status": code}``, validation details included.

Unknown routes, bad parameters, unknown instruments and unexpected failures all answer in JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("of_api.errors")


def body(status: int, reason: str, **extra: Any) -> dict[str, Any]:
    return {"error": reason, "status": status, **extra}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reason = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and reason == "Not Found":
        reason = f"no such route: {request.url.path}"
    return JSONResponse(body(exc.status_code, reason), exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return JSONResponse(
        jsonable_encoder(body(422, f"invalid {where}: {first['msg']}", details=details)), 422
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return JSONResponse(body(500, f"internal error: {type(exc).__name__}"), 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
