"""What every trade and signal was worth: trade statistics in R, forward returns of each pattern
kind and grade at fixed horizons in ticks and R, hit rates with bootstrap intervals, before and
after costs. Pure functions of the exported rows.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MINUTE_NS: Final = 60_000_000_000
HORIZONS_MIN: Final = (1, 5, 15)
BOOTSTRAP: Final = 1000
SEED: Final = 12345


@dataclass(frozen=True)
class Costs:
    """Round-trip costs of one venue: ``fee`` per side as a fraction of the price, and the
    spread in ticks (half of it paid on entry, half on exit)."""

    fee: float = 0.0
    spread_ticks: float = 0.0

    def ticks(self, price: float, tick: float) -> float:
        return 2 * self.fee * price / tick + self.spread_ticks


def bootstrap_ci(
    hits: Sequence[bool], n: int = BOOTSTRAP, seed: int = SEED
) -> tuple[float, float] | None:
    """The 2.5th and 97.5th percentiles of the hit rate over ``n`` resamples (fixed seed)."""
    k = len(hits)
    if k == 0:
        return None
    rng = random.Random(seed)
    wins = [1 if h else 0 for h in hits]
    rates = sorted(sum(rng.choices(wins, k=k)) / k for _ in range(n))
    return rates[int(0.025 * (n - 1))], rates[math.ceil(0.975 * (n - 1))]


def max_drawdown(rs: Sequence[float]) -> float:
    """The largest fall of the cumulative R from a running peak (0 with no loss)."""
    peak = equity = worst = 0.0
    for r in rs:
        equity += r
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def trade_stats(trades: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Closed trades (``r_multiple`` set), in exit order: count, win rate, expectancy and
    profit factor in R, max drawdown in R."""
    closed = sorted(
        (t for t in trades if t.get("r_multiple") is not None),
        key=lambda t: (t["exit_ts"], t["symbol"], t["trade_id"]),
    )
    rs = [float(t["r_multiple"]) for t in closed]
    wins = [r for r in rs if r > 0]
    losses = [r for r in rs if r < 0]
    gross_loss = -sum(losses)
    return {
        "trades": len(rs),
        "open": sum(1 for t in trades if t.get("r_multiple") is None),
        "win_rate": len(wins) / len(rs) if rs else None,
        "expectancy_r": sum(rs) / len(rs) if rs else None,
        "profit_factor": sum(wins) / gross_loss if gross_loss > 0 else None,
        "max_drawdown_r": max_drawdown(rs),
        "total_r": sum(rs),
    }


def grouped(trades: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in trades:
        if t.get("r_multiple") is not None:
            groups.setdefault(str(t[key]), []).append(t)
    return {k: trade_stats(v) for k, v in sorted(groups.items())}


def median_stop_ticks(trades: Sequence[Mapping[str, Any]], tick: Mapping[str, float]) -> float:
    """The median initial stop distance in ticks over the trades (NaN without trades)."""
    d = [abs(t["entry_price"] - t["stop"]) / tick[t["symbol"]] for t in trades]
    d = [x for x in d if x > 0]
    return statistics.median(d) if d else math.nan


@dataclass(frozen=True)
class Forward:
    """One signal's return at one horizon: from the close of the last closed 1-minute bar at or
    before its decision time to the close of the last one closed by the horizon, in the
    signal's direction."""

    symbol: str
    signal_id: str
    pattern: str
    grade: str
    horizon_min: int
    ticks: float
    cost_ticks: float


def forward_returns(
    signals: Sequence[Mapping[str, Any]],
    bars: Sequence[Mapping[str, Any]],
    tick: Mapping[str, float],
    costs: Mapping[str, Costs],
    horizons: Sequence[int] = HORIZONS_MIN,
) -> list[Forward]:
    """Signals without a closed bar before them, or not followed by a bar closing at or after
    the horizon (the data ends), have no return at that horizon."""
    closes: dict[str, tuple[list[int], list[float]]] = {}
    for b in sorted(bars, key=lambda b: (b["symbol"], b["close_ts"])):
        ts, px = closes.setdefault(b["symbol"], ([], []))
        ts.append(b["close_ts"])
        px.append(b["close"])
    out: list[Forward] = []
    for s in signals:
        got = closes.get(s["symbol"])
        if got is None or s["direction"] == 0:
            continue
        ts, px = got
        i0 = bisect.bisect_right(ts, s["ts_event"]) - 1
        if i0 < 0:
            continue
        p0 = px[i0]
        cost = costs.get(s["symbol"], Costs()).ticks(p0, tick[s["symbol"]])
        for h in horizons:
            end = s["ts_event"] + h * MINUTE_NS
            if ts[-1] < end:
                continue
            i1 = bisect.bisect_right(ts, end) - 1
            ticks = s["direction"] * (px[i1] - p0) / tick[s["symbol"]]
            out.append(
                Forward(s["symbol"], s["signal_id"], s["pattern"], s["grade"], h, ticks, cost)
            )
    return out


def forward_table(rows: Sequence[Forward], stop_ticks: float) -> list[dict[str, Any]]:
    """Per pattern, grade and horizon: count, mean return in ticks and in R of the median stop,
    hit rate (return > 0) with its bootstrap 95 % interval, before and after costs."""
    groups: dict[tuple[str, str, int], list[Forward]] = {}
    for r in rows:
        groups.setdefault((r.pattern, r.grade, r.horizon_min), []).append(r)
    table = []
    for (pattern, grade, h), g in sorted(groups.items()):
        gross = [r.ticks for r in g]
        net = [r.ticks - r.cost_ticks for r in g]
        row: dict[str, Any] = {"pattern": pattern, "grade": grade, "horizon_min": h, "n": len(g)}
        for name, values in (("gross", gross), ("net", net)):
            hits = [v > 0 for v in values]
            ci = bootstrap_ci(hits)
            mean = sum(values) / len(values)
            row[f"{name}_mean_ticks"] = mean
            row[f"{name}_mean_r"] = mean / stop_ticks if stop_ticks > 0 else None
            row[f"{name}_hit_rate"] = sum(hits) / len(hits)
            row[f"{name}_hit_lo"] = ci[0] if ci else None
            row[f"{name}_hit_hi"] = ci[1] if ci else None
        table.append(row)
    return table
