"""The backtest report (issue 12): its statistics against plain computations in the test (forward
returns and hit rates from the exported bars and signals, trade statistics, R²), and the HTML is
one self-contained file that parses and embeds no external URL."""

from __future__ import annotations

import csv
import json
import math
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.support.backtest_data import binance_recording
from tests.support.real_data import BINANCE_SPOT, require

from of_backtest import cli
from of_backtest.ofi import Regression, ofi_step, r_squared
from of_backtest.stats import bootstrap_ci, max_drawdown, trade_stats

pytestmark = pytest.mark.timeout(300)

MINUTE = 60_000_000_000
TICK = 0.1  # BTCUSDT
FEE, SPREAD = 0.00055, 1.0  # the default Bybit costs


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of BTCUSDT across the UTC midnight (bias, signals, forward returns)."""
    out = tmp_path_factory.mktemp("sim")
    argv = ["--sim", "5", "--from", "2024-03-05T23:30:00Z", "--hours", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    return out


def _expected_forward(out: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    bars = pq.read_table(out / "bars_1m.parquet").to_pylist()
    signals = pq.read_table(out / "signals.parquet").to_pylist()
    groups: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for s in signals:
        before = [b for b in bars if b["close_ts"] <= s["ts_event"]]
        if not before or s["direction"] == 0:
            continue
        p0 = max(before, key=lambda b: b["close_ts"])["close"]
        cost = 2 * FEE * p0 / TICK + SPREAD
        for h in (1, 5, 15):
            end = s["ts_event"] + h * MINUTE
            if max(b["close_ts"] for b in bars) < end:
                continue
            p1 = max((b for b in bars if b["close_ts"] <= end), key=lambda b: b["close_ts"])
            ticks = s["direction"] * (p1["close"] - p0) / TICK
            groups.setdefault((s["pattern"], s["grade"], h), []).append((ticks, ticks - cost))
    return {
        k: {
            "n": len(v),
            "gross_mean_ticks": sum(g for g, _ in v) / len(v),
            "gross_hit_rate": sum(1 for g, _ in v if g > 0) / len(v),
            "net_hit_rate": sum(1 for _, n in v if n > 0) / len(v),
        }
        for k, v in groups.items()
    }


def test_forward_returns_and_hit_rates_match_a_plain_computation(sim_run: Path) -> None:
    expected = _expected_forward(sim_run)
    assert sum(e["n"] for e in expected.values()) >= 10  # enough signals to mean something
    with (sim_run / "forward_returns.csv").open() as f:
        got = {(r["pattern"], r["grade"], int(r["horizon_min"])): r for r in csv.DictReader(f)}
    assert set(got) == set(expected)
    for key, e in expected.items():
        g = got[key]
        assert int(g["n"]) == e["n"], key
        assert float(g["gross_mean_ticks"]) == pytest.approx(e["gross_mean_ticks"]), key
        assert float(g["gross_hit_rate"]) == pytest.approx(e["gross_hit_rate"]), key
        assert float(g["net_hit_rate"]) == pytest.approx(e["net_hit_rate"]), key
        lo, hi = float(g["gross_hit_lo"]), float(g["gross_hit_hi"])
        assert lo <= e["gross_hit_rate"] <= hi, key
    summary = json.loads((sim_run / "summary.json").read_text())
    assert summary["signals"] == len(pq.read_table(sim_run / "signals.parquet"))


def test_bootstrap_interval_is_close_to_the_normal_approximation() -> None:
    hits = [True] * 30 + [False] * 70
    lo, hi = bootstrap_ci(hits) or (0.0, 0.0)
    half = 1.96 * math.sqrt(0.3 * 0.7 / 100)  # Wald interval of p = 0.3, n = 100
    assert lo == pytest.approx(0.3 - half, abs=0.025)
    assert hi == pytest.approx(0.3 + half, abs=0.025)
    assert bootstrap_ci([True] * 5) == (1.0, 1.0)
    assert bootstrap_ci([]) is None


def test_trade_statistics_match_a_plain_computation() -> None:
    rs = [1.5, -1.0, 2.0, -1.0, -0.5]
    trades = [
        {"symbol": "X", "trade_id": str(n), "exit_ts": n, "r_multiple": r} for n, r in enumerate(rs)
    ]
    trades.append({"symbol": "X", "trade_id": "open", "exit_ts": None, "r_multiple": None})
    got = trade_stats(trades)
    equity = [sum(rs[: n + 1]) for n in range(len(rs))]  # 1.5, 0.5, 2.5, 1.5, 1.0
    worst = max(max(equity[: n + 1]) - equity[n] for n in range(len(rs)))
    assert got["trades"] == 5
    assert got["open"] == 1
    assert got["win_rate"] == pytest.approx(2 / 5)
    assert got["expectancy_r"] == pytest.approx(sum(rs) / 5)
    assert got["profit_factor"] == pytest.approx((1.5 + 2.0) / (1.0 + 1.0 + 0.5))
    assert got["max_drawdown_r"] == pytest.approx(worst)
    assert max_drawdown([-1.0, -1.0]) == pytest.approx(2.0)  # from the zero start


def test_r_squared_and_ofi_match_plain_definitions() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.5]
    y = [2.1, 3.9, 6.2, 8.1, 10.0]
    assert r_squared(x, y) == pytest.approx(statistics.correlation(x, y) ** 2)
    assert r_squared([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    running = Regression()  # the report's constant-memory form
    for a, b in zip(x, y, strict=True):
        running.add(a, b)
    assert running.r2() == pytest.approx(statistics.correlation(x, y) ** 2)
    # bid up (new bid size counts), ask unchanged (size change counts): e = qb - (qa - qa0)
    assert ofi_step(((100.0, 5.0), (101.0, 4.0)), ((100.5, 2.0), (101.0, 6.0))) == 2.0 - 2.0
    # bid down: the old bid size leaves; ask down: the new ask size is supply
    assert ofi_step(((100.0, 5.0), (101.0, 4.0)), ((99.5, 3.0), (100.5, 1.0))) == -5.0 - 1.0


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value:
                self.urls.append(value)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        assert self.open[-1] == tag, f"</{tag}> closes <{self.open[-1]}>"
        self.open.pop()


def _check_html(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size < 10 * 1024 * 1024
    p = _Collect()
    p.feed(text)
    p.close()
    assert p.open == [], f"unclosed: {p.open}"
    assert "script" not in p.tags
    assert "link" not in p.tags
    assert "iframe" not in p.tags
    # Only in-document references (#id); the SVG namespace URIs (xmlns) are names, not fetched.
    assert all(u.startswith("#") for u in p.urls), p.urls
    assert "url(http" not in text
    assert "@import" not in text
    return text


def test_the_report_is_one_offline_file(sim_run: Path) -> None:
    text = _check_html(sim_run / "report.html")
    assert text.count("<svg") >= 1  # the forward-return plot at least
    for heading in ("Trades", "forward returns", "Pipeline sanity", "Data quality"):
        assert heading in text


def test_real_recording_sanity_r2_is_in_the_published_range(tmp_path: Path) -> None:
    require(BINANCE_SPOT)
    paths = binance_recording(tmp_path / "rec")
    assert cli.main([*map(str, paths), "--out", str(tmp_path / "out")]) == 0
    _check_html(tmp_path / "out" / "report.html")
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["sanity"]["BTCUSDT"]["10s"]
    assert s["buckets"] >= 30
    # landscape.md §4 A1-A2: 0.4-0.7 for best-level OFI, about half for trade imbalance
    assert 0.3 <= s["r2_ofi"] <= 0.8
    assert s["r2_trade_imbalance"] < s["r2_ofi"]
