"""The dashboard on `make demo`'s market once a trade has entered, broken even, trailed and
exited: the chart's markers, the trade state and the journal's R on the page (issue 14).

The stack and page helpers are the dashboard test's; the market is the demo's (seed 7).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from tests.e2e.test_dashboard import REPO, TOKEN, _wait_js, stack
from tests.e2e.test_demo_trades import KINDS, _closed_managed_trade
from tests.support.browser import artifacts, chromium, collect_errors
from tests.support.servers import wait_for

from ofcommon.messages import TradeEvent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(120),
]

NS = 1_000_000_000
SYMBOL = "EURUSD"
# `make demo`'s market (Makefile demo): an hour before the session close, seed 7, episodes
# every ~45 s; its first hour as fast as the stages take it, then live at 60x.
DEMO_SIM = {
    "OF_SIM_START": "2024-03-05T23:00:00Z",
    "OF_SIM_SEED": "7",
    "OF_SIM_EPISODE_GAP_S": "45",
    "OF_SIM_LABELS_PATH": "",
    "OF_SIM_INSTRUMENTS": SYMBOL,
}
PREFIX_S = 3600
TEXT = {"breakeven": "BE", "trail": "TRAIL", "exit": "EXIT"}


def _managed(events: list[TradeEvent]) -> list[TradeEvent]:
    """The events of the first trade that entered, broke even, trailed and exited."""
    for trade_id in dict.fromkeys(e.trade_id for e in events if e.kind == "exit"):
        mine = [e for e in events if e.trade_id == trade_id]
        if set(KINDS) <= {e.kind for e in mine}:
            return mine
    raise AssertionError("no managed trade among the events")


def _expected_text(e: TradeEvent) -> str:
    if e.kind == "entry":
        return "ENTRY ▲" if e.direction > 0 else "ENTRY ▼"
    return TEXT[e.kind]


def check_markers(page: Any, events: list[TradeEvent]) -> None:
    """Every event of the trade is a marker the page set on the candle series, on the 1m bar
    opening at or before the event and at the event's price."""
    want = [e for e in events if e.kind in KINDS]
    texts = {_expected_text(e) for e in want}
    _wait_js(
        page,
        "(() => { const m = window.__of.chartMarkers(); const t = new Set(m.map((x) => x.text));"
        f" return {sorted(texts)!r}.every((x) => t.has(x)); }})()",
        "entry, BE, trail and exit markers",
        30,
    )
    shown: list[dict[str, Any]] = page.evaluate("window.__of.chartMarkers()")
    for e in want:
        t = e.ts_event // NS
        bar = t - t % 60
        text = _expected_text(e)
        here = [m for m in shown if m["time"] == bar and m["text"] == text]
        assert here, f"{e.kind} at {bar}: no {text!r} marker among {shown}"
        prices = [m.get("price") for m in here]
        assert any(p == pytest.approx(e.price, abs=1e-9) for p in prices), (
            f"{e.kind} at {e.price}: markers at {prices}"
        )
        assert all(m["position"].startswith("atPrice") for m in here), here


def check_trade_state(page: Any, events: list[TradeEvent]) -> None:
    """The strategy-status panel shows the trade: its id, direction, entry, last stop and R."""
    trade_id = events[0].trade_id
    el = f"document.querySelector('#status .trade[data-trade-id=\"{trade_id}\"]')"
    _wait_js(page, f"{el} !== null", "the trade in the trade-state panel", 20)
    got = page.evaluate(f"({{...{el}.dataset}})")
    entry = next(e for e in events if e.kind == "entry")
    exit_ = next(e for e in events if e.kind == "exit")
    moved = [e.stop for e in events if e.kind in ("entry", "breakeven", "trail")]
    assert got["state"] == "closed"
    assert float(got["entry"]) == pytest.approx(entry.price, abs=1e-9)
    assert float(got["stop"]) == pytest.approx(moved[-1], abs=1e-9)
    assert float(got["exit"]) == pytest.approx(exit_.price, abs=1e-9)
    assert float(got["r"]) == pytest.approx(exit_.r_multiple, abs=1e-9)


def check_performance(page: Any, url: str, trade_id: str) -> None:
    """The performance panel lists the closed trade with the journal's R."""
    perf = httpx.get(url + "/api/performance", headers={"Authorization": f"Bearer {TOKEN}"})
    curve = {p["trade_id"]: p["r"] for p in perf.json()["equity_curve"]}
    assert trade_id in curve, "the journal holds the closed trade"
    row = f"document.querySelector('#perf [data-trade-id=\"{trade_id}\"]')"
    shown = _wait_js(page, f"{row}?.dataset.r", "the closed trade in the performance panel", 40)
    assert float(shown) == pytest.approx(curve[trade_id], abs=1e-9)
    n = int(page.inner_text("#perf [data-perf='trades']"))
    assert n == perf.json()["trades"]


def test_dashboard_shows_a_managed_trade(
    clean_redis: str, database_url: str, tmp_path: Path
) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_web.py")], check=True)
    r = sync_redis.Redis.from_url(clean_redis)
    logs = tmp_path / "logs"
    with (
        stack(clean_redis, database_url, logs, DEMO_SIM, PREFIX_S, "60") as (url, _),
        chromium() as browser,
    ):
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1450})
            errors = collect_errors(page)
            page.goto(f"{url}/?symbol={SYMBOL}&tf=1m#token={TOKEN}")
            _wait_js(page, "Number(document.getElementById('chart').dataset.bars) > 0", "bars")
            events = _managed(wait_for(lambda: _closed_managed_trade(r), 80, "a managed trade"))
            check_markers(page, events)
            check_trade_state(page, events)
            check_performance(page, url, events[0].trade_id)
            # zoomed in on the newest bars, where the trade is (docs/img/chart.png)
            box = page.locator("#chart").bounding_box()
            page.mouse.move(box["x"] + box["width"] - 90, box["y"] + box["height"] / 2)
            page.wait_for_timeout(6000)  # a few more bars after the exit (60x: one a second)
            for _ in range(10):
                page.mouse.wheel(0, -240)
            page.wait_for_timeout(500)
            for panel in ("chart", "status", "perf"):
                shot = artifacts("dashboard") / f"{panel}-trade.png"
                page.locator(f"#p-{panel}").screenshot(path=str(shot))
            page.close()  # before the stack stops: its closing connections are no page errors
        finally:
            r.close()
    assert not errors, f"console errors: {errors}"
