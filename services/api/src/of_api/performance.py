"""Performance statistics of closed journal trades: win rate, expectancy in R, R histogram,
equity curve in cumulative R. Pure; trades without an R are counted but not averaged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

NS: Final = 1_000_000_000


def r_bucket(r: float, width: float) -> float:
    """Lower edge of the histogram bucket of ``r``."""
    return math.floor(r / width) * width


def performance(trades: Sequence[Mapping[str, Any]], bucket_r: float = 0.5) -> dict[str, Any]:
    """``trades``: closed journal_trades rows in exit order."""
    rs = [float(t["r_multiple"]) for t in trades if t.get("r_multiple") is not None]
    wins = [r for r in rs if r > 0]
    losses = [r for r in rs if r < 0]
    hist: dict[float, int] = {}
    for r in rs:
        b = r_bucket(r, bucket_r)
        hist[b] = hist.get(b, 0) + 1
    equity, total = [], 0.0
    for t in trades:
        if t.get("r_multiple") is None:
            continue
        total += float(t["r_multiple"])
        equity.append(
            {
                "time": int(t["exit_ts"]) // NS,
                "exit_ts": int(t["exit_ts"]),
                "symbol": t["symbol"],
                "trade_id": t["trade_id"],
                "r": float(t["r_multiple"]),
                "equity_r": total,
            }
        )
    n = len(rs)
    return {
        "trades": len(trades),
        "with_r": n,
        "wins": len(wins),
        "losses": len(losses),
        "breakeven": n - len(wins) - len(losses),
        "win_rate": len(wins) / n if n else None,
        "expectancy_r": math.fsum(rs) / n if n else None,
        "total_r": math.fsum(rs),
        "avg_win_r": math.fsum(wins) / len(wins) if wins else None,
        "avg_loss_r": math.fsum(losses) / len(losses) if losses else None,
        "profit_factor": math.fsum(wins) / -math.fsum(losses) if losses else None,
        "r_distribution": [
            {"from_r": b, "to_r": b + bucket_r, "count": c} for b, c in sorted(hist.items())
        ],
        "equity_curve": equity,
    }
