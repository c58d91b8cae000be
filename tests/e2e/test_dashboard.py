"""The dashboard in a real Chromium against the running stack on the simulated market: token
required, panels drawn, values equal to the streams', live updates, switching, signal cards.

Screenshots and the speed figures go to var/test-artifacts/dashboard/ (OF_TEST_ARTIFACTS).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from tests.support.browser import CANVAS_INK_JS, artifacts, chromium, collect_errors
from tests.support.servers import free_port, spawn_service, stop, wait_for

from ofcommon import codec, keys
from ofcommon.db import migrate
from ofcommon.messages import Bar, PatternSignal, Trade, TradeEvent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD")
TOKEN = "dash-test-token-51c2"
NS = 1_000_000_000
# 40 minutes of market as fast as the stages take it (indicators warm up, the UTC session of
# BTCUSDT closes at 00:00 so there is a bias), then the same market goes on live at 10x.
SIM = {
    "OF_SIM_START": "2024-03-05T23:25:00Z",
    "OF_SIM_EPISODE_GAP_S": "60",
    "OF_SIM_LABELS_PATH": "",
    "OF_SIM_INSTRUMENTS": ",".join(SYMBOLS),
}
PREFIX_S = 2400
PANELS = ("chart", "footprint", "profile", "heatmap", "ladder", "delta")


def _decoded(r: sync_redis.Redis, symbol: str, kind: str, count: int) -> list[Any]:
    return [codec.decode(f[b"d"]) for _, f in r.xrevrange(keys.stream(symbol, kind), count=count)]


@contextlib.contextmanager
def stack(
    redis_url: str,
    database_url: str,
    log_dir: Path,
    sim: dict[str, str] = SIM,
    prefix_s: int = PREFIX_S,
    live_speed: str = "10",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The stages, the simulator (``prefix_s`` of its market at full speed, then live at
    ``live_speed``) and the API: the API's URL and the live simulator."""
    migrate(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env |= {
        "OF_REDIS_URL": redis_url,
        "OF_DATABASE_URL": database_url,
        "OF_INSTRUMENTS": ",".join(SYMBOLS),
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    r = sync_redis.Redis.from_url(redis_url)
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # the API first: it starts slowest, and follows the streams from wherever they are
        api_env = {"OF_API_TOKEN": TOKEN, "OF_API_PORT": str(port)}
        procs.append(spawn_service("api", env, log_dir, "api", **api_env))
        for name in ("analytics", "patterns", "aggregator"):
            procs.append(spawn_service(name, env, log_dir, name))
        prefix = spawn_service(
            "sim", env, log_dir, "sim-prefix", OF_SIM_SPEED="max", **sim,
            OF_SIM_DURATION_S=str(prefix_s),
        )  # fmt: skip
        procs.append(prefix)

        def prefix_done() -> bool:
            found = [json.loads(r.get(k) or "{}") for k in r.scan_iter(keys.health_pattern("sim"))]
            return any(f.get("done") for f in found)

        wait_for(prefix_done, 150, "the simulator's prefix", every=0.5)
        stop(prefix)
        live = spawn_service("sim", env, log_dir, "sim-live", OF_SIM_SPEED=live_speed, **sim)
        procs.append(live)

        def serving() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).json().get("hub_ready") is True
            except httpx.HTTPError:
                return False

        wait_for(serving, 90, "the api")
        yield url, live
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                stop(proc)
        r.close()


def _wait_js(page: Any, expr: str, what: str, timeout_s: float = 45) -> Any:
    try:
        page.wait_for_function(expr, timeout=timeout_s * 1000)
    except Exception as err:  # playwright's TimeoutError: say what was awaited
        page.screenshot(path=str(artifacts("dashboard") / "failed.png"), full_page=True)
        raise AssertionError(f"the page did not show {what} within {timeout_s:.0f} s") from err
    return page.evaluate(expr)


def _data(page: Any, element: str, name: str) -> str | None:
    value: str | None = page.evaluate(
        f"document.getElementById('{element}').dataset.{name} ?? null"
    )
    return value


def check_token_required(browser: Any, url: str) -> None:
    assert httpx.get(url + "/api/instruments").status_code == 401
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#token-dialog:not([hidden])")
    page.fill("#token-input", "not-the-token")
    page.click("#token-form button")
    page.wait_for_function("document.getElementById('token-error').textContent.includes('refused')")
    assert page.is_visible("#token-dialog")
    assert page.evaluate("document.getElementById('chart').dataset.bars ?? null") is None
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    _wait_js(
        page, "Number(document.getElementById('chart').dataset.bars) > 0", "bars after the token"
    )
    assert page.is_hidden("#token-dialog")
    # kept for the session: a reload asks no more
    page.reload()
    _wait_js(page, "Number(document.getElementById('chart').dataset.bars) > 0", "bars after reload")
    assert page.is_hidden("#token-dialog")
    page.close()


def check_panels_draw(page: Any) -> None:
    _wait_js(page, "Number(document.getElementById('chart').dataset.bars) > 0", "price bars")
    _wait_js(page, "Number(document.getElementById('footprint').dataset.bars) > 0", "footprints")
    _wait_js(page, "document.getElementById('ladder').dataset.bestBid !== undefined", "the book")
    _wait_js(page, "document.querySelectorAll('#tape tr[data-trade-id]').length > 5", "the tape")
    # the heatmap needs a few book samples; the profile its first update
    _wait_js(page, "document.getElementById('p-heatmap').dataset.state === 'ok'", "the heatmap")
    _wait_js(page, "document.getElementById('p-profile').dataset.state === 'ok'", "a profile")
    page.wait_for_timeout(1500)
    for panel in PANELS:
        ink = page.evaluate(CANVAS_INK_JS, panel)
        assert ink, f"{panel}: no canvas"
        assert max(ink) > 2000, f"{panel}: its canvases are blank ({ink} pixels drawn)"


def check_values_equal_streams(page: Any, r: sync_redis.Redis, symbol: str) -> None:
    trade_id = _wait_js(page, "document.getElementById('last').dataset.tradeId", "a last trade")
    shown = float(page.inner_text("#last"))
    trades = {t.trade_id: t for t in _decoded(r, symbol, "trades", 20_000) if isinstance(t, Trade)}
    assert trade_id in trades, "the last price shown is of a trade on the stream"
    assert shown == pytest.approx(trades[trade_id].price, abs=1e-9)
    # the newest closed 1m bar's delta, against the footprint rows of the stream's final bar
    t = int(_wait_js(page, "document.getElementById('footprint').dataset.lastClosedTime", "a bar"))
    delta = float(_data(page, "footprint", "lastClosedDelta") or "nan")
    finals = [
        b
        for b in _decoded(r, symbol, "bars", 20_000)
        if isinstance(b, Bar) and b.final and b.timeframe == "1m" and b.open_ts == t * NS
    ]
    assert finals, f"a final 1m bar opening at {t} on the stream"
    plain = math.fsum(row.ask_volume - row.bid_volume for row in finals[0].footprint)
    assert delta == pytest.approx(plain, abs=1e-6)
    # the profile panel's price lines: session POC/VAH/VAL at least
    assert int(_data(page, "chart", "lines") or 0) >= 3


def check_live(page: Any) -> None:
    first_id = _data(page, "last", "tradeId")
    updates = int(_data(page, "chart", "updates") or 0)
    _wait_js(
        page,
        f"document.getElementById('last').dataset.tradeId !== {json.dumps(first_id)} && "
        f"Number(document.getElementById('chart').dataset.updates ?? 0) > {updates}",
        "live trades and candle updates",
        30,
    )


def check_signals(page: Any, r: sync_redis.Redis, symbol: str) -> None:
    """A pattern card and an aggregator event card, each one of its stream's; the chart's
    markers. (An entry, the source of entry/BE/trail/exit markers, needs hours of simulated
    market: in 4 h of it the aggregator rejected every setup, so none is awaited here.)"""
    card = _wait_js(
        page,
        "document.querySelector('#signals .card[data-kind=\"pattern\"]')?.dataset.id",
        "a pattern signal card",
        60,
    )
    found = _decoded(r, symbol, "patterns", 5000)
    assert card in {p.signal_id for p in found if isinstance(p, PatternSignal)}
    event = _wait_js(
        page, "document.querySelector('#signals .card.trade')?.dataset.id", "an event card", 30
    )
    events = _decoded(r, symbol, "tradeevents", 5000)
    assert event in {e.event_id for e in events if isinstance(e, TradeEvent)}
    _wait_js(page, "Number(document.getElementById('chart').dataset.markers) > 0", "markers")


def check_missing_data_state(page: Any, url: str) -> None:
    """An instrument's chart says it has no bars exactly when the API has none for it."""
    page.select_option("#symbol", "NAS100USDT")
    _wait_js(page, "document.getElementById('chart').dataset.symbol === 'NAS100USDT'", "NAS100")
    candles = httpx.get(
        url + "/api/candles/NAS100USDT", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    state = page.evaluate("document.getElementById('p-chart').dataset.state")
    if candles:
        assert state in ("ok", "stale")
    else:
        assert state == "empty"
        assert "no bars" in page.inner_text("#p-chart h2")


def check_switching(page: Any, url: str) -> None:
    check_missing_data_state(page, url)
    page.select_option("#symbol", "EURUSD")
    page.click("[data-tf='5m']")
    page.wait_for_url("**/?symbol=EURUSD&tf=5m")
    _wait_js(
        page,
        "Number(document.getElementById('footprint').dataset.lastClosedTime) % 300 === 0 && "
        "Number(document.getElementById('chart').dataset.bars) > 0",
        "5-minute EURUSD bars",
    )
    page.reload()
    page.wait_for_function("document.getElementById('symbol').value === 'EURUSD'")
    assert page.evaluate("document.querySelector('[data-tf=\"5m\"]').classList.contains('on')")


def check_stale_feed(page: Any, sim: subprocess.Popen[bytes]) -> None:
    """The market stops: the header and the live panels say the feed is stale."""
    stop(sim)
    _wait_js(page, "document.getElementById('feed').textContent.startsWith('stale')", "stale", 40)
    for panel in ("chart", "footprint", "tape", "heatmap"):
        state = page.evaluate(f"document.getElementById('p-{panel}').dataset.state")
        assert state == "stale", f"{panel} is {state!r} with the feed stopped"
    assert "feed stale" in page.inner_text("#p-chart h2")


def measure(page: Any) -> dict[str, Any]:
    """Load → first drawn chart, and drawing time per animation frame while updating."""
    page.evaluate("window.__of.frameTimes.length = 0")
    page.wait_for_timeout(6000)
    got: dict[str, Any] = page.evaluate(
        "({first: window.__of.firstChartMs, frames: [...window.__of.frameTimes],"
        " bars: Number(document.getElementById('footprint').dataset.bars)})"
    )
    frames = sorted(got["frames"])
    p95 = frames[min(len(frames) - 1, int(len(frames) * 0.95))] if frames else None
    return {
        "first_chart_ms": got["first"],
        "frames": len(frames),
        "frame_draw_p95_ms": p95,
        "frame_draw_max_ms": frames[-1] if frames else None,
        "footprint_bars": got["bars"],
    }


def test_dashboard_in_chromium(
    redis_url: str, clean_redis: str, database_url: str, tmp_path: Path
) -> None:
    redis_client = contextlib.closing(sync_redis.Redis.from_url(clean_redis))
    with chromium() as browser, redis_client as r:
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_web.py")], check=True)
        out = artifacts("dashboard")
        with stack(clean_redis, database_url, tmp_path / "logs") as (url, sim):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1450})
            check_token_required(ctx, url)  # its refused token logs a 401: not counted
            page = ctx.new_page()
            errors = collect_errors(page)
            page.goto(f"{url}/?symbol=BTCUSDT&tf=1m#token={TOKEN}")
            assert "token" not in page.url, "the token leaves the address bar"
            check_panels_draw(page)
            check_values_equal_streams(page, r, "BTCUSDT")
            check_live(page)
            speed = measure(page)
            for panel in (*PANELS, "tape"):
                page.locator(f"#p-{panel}").screenshot(path=str(out / f"{panel}.png"))
            check_switching(page, url)
            check_signals(page, r, "EURUSD")
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            for panel in ("signals", "status", "scanner", "micro", "perf"):
                page.locator(f"#p-{panel}").screenshot(path=str(out / f"{panel}.png"))
            check_stale_feed(page, sim)
            (out / "speed.json").write_text(json.dumps(speed, indent=1))
            print("dashboard speed:", speed)
            ctx.close()  # before the stack stops: its closing connections are no page errors
    assert not errors, f"console errors: {errors}"
