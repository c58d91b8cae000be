"""The dashboard's files: `/` serves the built page, `/static` its bundle (no token: the page asks
for it and sends it on every REST call and the WebSocket). Built by `make web` into ./static.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC: Final = Path(__file__).parent / "static"

NOT_BUILT: Final = """<!doctype html><html><head><meta charset="utf-8"><title>OrderFlow</title>
</head><body><h1>OrderFlow API</h1><p>The dashboard is not built: run <code>make web</code>
(<code>make run</code> and <code>make demo</code> build it). The REST API is documented at
<a href="/docs">/docs</a>; the live channels are on the WebSocket <code>/ws</code>.</p>
</body></html>
"""


class _Static(StaticFiles):
    """StaticFiles that answers 404 (not 500) while the folder is not built yet."""

    async def check_config(self) -> None:
        if self.directory is not None and await run_in_threadpool(Path(self.directory).is_dir):
            await super().check_config()


def install(app: FastAPI, static: Path = STATIC) -> None:
    """Serve the dashboard at `/` and its bundle under `/static` (a placeholder when unbuilt)."""
    index = static / "index.html"

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        if await run_in_threadpool(index.is_file):
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(NOT_BUILT)

    app.mount("/static", _Static(directory=static, check_dir=False), name="static")
