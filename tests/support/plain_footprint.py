"""Plain references for footprint tests: per-row cells, diagonal imbalances and stacked runs,
written without the engines (of_analytics.footprint) so that tests compare against them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

# row index -> [bid volume (sell aggressors), ask volume (buy aggressors)]
Cells = dict[int, list[float]]


def cells_by_minute(
    prints: Iterable[tuple[int, int, float, bool]], row_ticks: int, period_ns: int
) -> dict[int, Cells]:
    """(ts_event, price in whole ticks, size, is_buy) -> minute open -> row -> [bid, ask]."""
    out: dict[int, Cells] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for ts, ticks, size, buy in prints:
        out[ts - ts % period_ns][ticks // row_ticks][1 if buy else 0] += size
    return out


def diagonal_imbalances(c: Cells, ratio: float = 3.0) -> set[tuple[int, int]]:
    """(row, side): buy at p if ask(p) >= ratio * bid(p-1) > 0, sell at p if bid(p) >= ratio *
    ask(p+1) > 0; no comparison row outside the bar's range; empty rows count as zero."""
    lo, hi = min(c), max(c)
    out: set[tuple[int, int]] = set()
    for k in range(lo, hi + 1):
        bid, ask = c.get(k, [0.0, 0.0])
        below = c.get(k - 1, [0.0, 0.0])[0]
        above = c.get(k + 1, [0.0, 0.0])[1]
        if k > lo and ask > 0 and below > 0 and ask >= ratio * below:
            out.add((k, 1))
        if k < hi and bid > 0 and above > 0 and bid >= ratio * above:
            out.add((k, -1))
    return out


def stacked_runs(found: set[tuple[int, int]], min_rows: int = 3) -> list[tuple[int, int, int]]:
    """(side, low row, high row) of each maximal run of >= ``min_rows`` same-side rows."""
    runs = []
    for side in (1, -1):
        ks = sorted(k for k, s in found if s == side)
        start = 0
        for j in range(1, len(ks) + 1):
            if j == len(ks) or ks[j] != ks[j - 1] + 1:
                if j - start >= min_rows:
                    runs.append((side, ks[start], ks[j - 1]))
                start = j
    return runs
