"""The dashboard's files: `/` and `/static` need no token, an unbuilt dashboard says how to build
it, and nothing outside the static folder is served."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from of_api import web


def _client(static: Path) -> httpx.AsyncClient:
    app = FastAPI()
    web.install(app, static)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_unbuilt_dashboard_says_how_to_build_it(tmp_path: Path) -> None:
    async with _client(tmp_path / "missing") as client:
        res = await client.get("/")
        assert (await client.get("/static/app.js")).status_code == 404
    assert res.status_code == 200
    assert "make web" in res.text


async def test_built_dashboard_is_served_without_a_token(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>x</title>marker-1")
    (static / "app.js").write_text("console.log('marker-2')")
    (tmp_path / "secret.txt").write_text("no")
    async with _client(static) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.text.endswith("marker-1")
        assert page.headers["cache-control"] == "no-cache"
        js = await client.get("/static/app.js")
        assert js.status_code == 200
        assert "marker-2" in js.text
        assert js.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/static/%2e%2e/secret.txt")).status_code == 404
        assert (await client.get("/static/nothing.js")).status_code == 404
