"""The picture of docs/backtest.md: a backtest's main report plots, from its ``summary.json``.

uv run python -m scripts.backtest_picture var/backtests/<stamp>/summary.json docs/backtest.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt

from of_backtest.report import plot_equity, plot_excursions, plot_forward, plot_hist


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    s = json.loads(Path(argv[0]).read_text())
    fig = plt.figure(figsize=(11, 6.5))
    grid = fig.add_gridspec(3, 2, height_ratios=(2, 1, 2))
    top, bottom = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    plot_equity(top, bottom, s["equity_r"])
    top.set_title(
        f"{', '.join(s['instruments'])}: closed trades {s['trades']['trades']}, equity and drawdown"
    )
    ax = fig.add_subplot(grid[0:2, 1])
    plot_forward(ax, [r for r in s["forward"] if r["grade"] in ("A+", "A")])
    ax.set_title("hit rate of A+/A signals by horizon, 95 % bootstrap interval")
    plot_hist(fig.add_subplot(grid[2, 0]), s["equity_r"])
    plot_excursions(fig.add_subplot(grid[2, 1]), s["excursions"])
    fig.tight_layout()
    fig.savefig(argv[1], dpi=80, metadata={"Software": None})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
