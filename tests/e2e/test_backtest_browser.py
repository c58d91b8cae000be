"""The backtest's report.html in a real Chromium (issue 12): opened from a file:// URL with every
request intercepted, no console error, no request but the file, plots drawn, numbers = summary.json.

The full-page screenshot goes to var/test-artifacts/backtest/ (OF_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import artifacts, chromium, collect_errors

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

# 75 simulated minutes across the UTC midnight with the aggregator's entry rules loosened (as for
# docs/backtest.png): a session completes, one trade opens and closes, patterns fire. ~15 s.
ARGS = ("--sim", "1", "--from", "2024-03-05T23:30:00Z", "--hours", "1.25")
LOOSE = {
    "OF_AGGREGATOR_WATCH_ROWS": "10",
    "OF_AGGREGATOR_MIN_SCORE": "20",
    "OF_AGGREGATOR_MIN_RR": "1.0",
    "OF_AGGREGATOR_COUNTER_BIAS": "true",
}
MAX_BYTES = 10 * 1024 * 1024

# The text of a table as rendered (innerText): header cells, then the rows' cells.
TABLE_JS = """(title) => {
  const h2 = [...document.querySelectorAll('h2')].find(h => h.textContent.startsWith(title));
  let t = h2.nextElementSibling;
  while (t && t.tagName !== 'TABLE') t = t.nextElementSibling;
  const cells = (tr) => [...tr.children].map(c => c.innerText.trim());
  return {head: cells(t.tHead.rows[0]), rows: [...t.tBodies[0].rows].map(cells)};
}"""

# Every plot: the outermost <svg> elements and every <img>, with their rendered box.
PLOTS_JS = """() => [...document.querySelectorAll('svg, img')]
  .filter(e => !(e.parentElement && e.parentElement.closest('svg')))
  .map(e => { const r = e.getBoundingClientRect();
              return {tag: e.tagName.toLowerCase(), width: r.width, height: r.height}; })"""

NUMBER = re.compile(r"^-?\d+(?:\.(\d+))?$")
PERCENT = re.compile(r"^(-?\d+(?:\.(\d+))?) %$")


def _matches(shown: str, value: Any) -> bool:
    """``shown`` (the page's text) states ``value`` to its printed precision: "–" for none, a
    percentage of a fraction, or a plain number; half a unit of the last digit either way."""
    if shown == "–":
        return value is None
    if value is None:
        return False
    if m := PERCENT.match(shown):
        digits = len(m.group(2) or "")
        return abs(float(m.group(1)) - 100 * float(value)) <= 0.5 * 10.0**-digits + 1e-9
    m = NUMBER.match(shown)
    assert m, f"not a number: {shown!r}"
    digits = len(m.group(1) or "")
    return abs(float(shown) - float(value)) <= 0.5 * 10.0**-digits + 1e-9


def _interval(shown: str) -> tuple[str, str, str]:
    """A hit rate with its interval, "48.0 % [30.1 %, 66.7 %]", as its three parts."""
    m = re.fullmatch(r"(.+) \[(.+), (.+)\]", shown)
    assert m, f"not a rate with its interval: {shown!r}"
    return m.group(1), m.group(2), m.group(3)


def _backtest(out: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")} | LOOSE
    cmd = [sys.executable, "-m", "ofcommon.cli", "backtest", *ARGS, "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """``path`` in a new page: the page, its errors and every URL it requested (only ``path``
    itself is let through, anything else is aborted)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    own = path.as_uri()

    def route(r: Any) -> None:
        requested.append(r.request.url)
        if r.request.url == own:
            r.continue_()
        else:
            r.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    errors = collect_errors(page)
    page.goto(own, wait_until="load")
    return page, errors, requested


def check_interception_sees_requests(browser: Any, tmp: Path) -> None:
    """The recorder catches what a file:// page would fetch (else "no request" proves nothing)."""
    probe = tmp / "probe.html"
    probe.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{background:'
        "url(http://127.0.0.1:9/bg.png)}</style></head><body>"
        '<img src="https://example.invalid/a.png"><img src="sibling.png"></body></html>'
    )
    page, errors, requested = _open(browser, probe)
    page.context.close()
    assert sorted(requested) == sorted(
        [
            probe.as_uri(),
            "https://example.invalid/a.png",
            (tmp / "sibling.png").as_uri(),
            "http://127.0.0.1:9/bg.png",
        ]
    )
    assert errors, "the aborted loads are console errors"


def check_headline(page: Any, summary: dict[str, Any]) -> None:
    """The Trades table and the forward-return table show summary.json's numbers."""
    trades = page.evaluate(TABLE_JS, "Trades")
    keys = {
        "trades": "trades",
        "open": "open",
        "win rate": "win_rate",
        "expectancy (R)": "expectancy_r",
        "profit factor": "profit_factor",
        "max DD (R)": "max_drawdown_r",
    }
    assert trades["head"] == list(keys)
    assert len(trades["rows"]) == 1
    for head, shown in zip(trades["head"], trades["rows"][0], strict=True):
        value = summary["trades"][keys[head]]
        assert _matches(shown, value), f"{head}: shown {shown!r}, summary.json {value!r}"

    fwd = page.evaluate(TABLE_JS, "Signals: forward returns")
    assert fwd["head"][:4] == ["pattern", "grade", "horizon", "n"]
    expected = summary["forward"]
    assert len(fwd["rows"]) == len(expected)
    for cells, row in zip(fwd["rows"], expected, strict=True):
        pattern, grade, horizon, n = cells[:4]
        assert (pattern, grade) == (row["pattern"], row["grade"])
        assert horizon == f"+{row['horizon_min']}m"
        assert int(n) == row["n"]
        for side, (ticks, r, hit) in zip(("gross", "net"), (cells[4:7], cells[7:10]), strict=True):
            what = f"{pattern} {grade} {horizon} {side}"
            assert _matches(ticks, row[f"{side}_mean_ticks"]), f"{what} ticks {ticks!r}"
            assert _matches(r, row[f"{side}_mean_r"]), f"{what} R {r!r}"
            rate, lo, hi = _interval(hit)
            for part, key in ((rate, "hit_rate"), (lo, "hit_lo"), (hi, "hit_hi")):
                assert _matches(part, row[f"{side}_{key}"]), f"{what} {key} {part!r}"


def test_report_opens_in_chromium_offline(tmp_path: Path) -> None:
    summary = _backtest(tmp_path / "bt")
    report = tmp_path / "bt" / "report.html"
    size = report.stat().st_size
    assert 0 < size < MAX_BYTES, f"report.html is {size:,} bytes"
    # what makes the checks below mean something: a closed trade (its plots) and forward returns
    assert summary["trades"]["trades"] >= 1
    assert summary["forward"]
    assert any(r["gross_mean_r"] is not None for r in summary["forward"])

    with chromium() as browser:
        check_interception_sees_requests(browser, tmp_path)
        page, errors, requested = _open(browser, report)
        assert requested == [report.as_uri()], f"requests beyond the file: {requested}"
        plots = page.evaluate(PLOTS_JS)
        # equity + drawdown, R histogram, MAE/MFE with closed trades; the forward-return plot
        assert len(plots) == 3 * bool(summary["equity_r"]) + 1, plots
        for plot in plots:
            assert plot["width"] > 0, plots
            assert plot["height"] > 0, plots
        check_headline(page, summary)
        page.screenshot(path=str(artifacts("backtest") / "report.png"), full_page=True)
        assert not errors, f"console errors: {errors}"
