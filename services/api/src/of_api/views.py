"""JSON views of wire messages for REST and WebSocket: chart-friendly names, seconds for time.

Non-finite floats become null (JSON has no inf/NaN); timestamps stay ns besides ``time`` in s.
"""

from __future__ import annotations

import math
from typing import Any, Final, TypeVar, cast

from ofcommon import codec
from ofcommon.messages import Bar, BookStats, Message, Trade

NS: Final = 1_000_000_000
T = TypeVar("T")


def finite(obj: T) -> T:
    """``obj`` with every non-finite float replaced by None, recursively."""
    return cast(T, _finite(obj))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def plain(msg: Message) -> dict[str, Any]:
    """The keyed JSON view of any message (tag under ``k``)."""
    out: dict[str, Any] = _finite(codec.to_plain(msg))
    return out


def seconds(ts_ns: int) -> int:
    return ts_ns // NS


def candle(bar: Bar) -> dict[str, Any]:
    return finite(
        {
            "time": seconds(bar.open_ts),
            "open_ts": bar.open_ts,
            "close_ts": bar.close_ts,
            "timeframe": bar.timeframe,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "buy_volume": bar.buy_volume,
            "sell_volume": bar.sell_volume,
            "delta": bar.delta,
            "trades": bar.trades,
            "vwap": bar.vwap,
            "final": bar.final,
            "gapped": bar.gapped,
        }
    )


def footprint(bar: Bar) -> dict[str, Any]:
    return finite(
        {
            **candle(bar),
            "poc": bar.poc,
            "delta_min": bar.delta_min,
            "delta_max": bar.delta_max,
            "cvd": bar.cvd,
            "levels": [
                {"price": r.price, "bid": r.bid_volume, "ask": r.ask_volume, "trades": r.trades}
                for r in bar.footprint
            ],
            "imbalances": [
                {"price": i.price, "side": int(i.side), "ratio": i.ratio} for i in bar.imbalances
            ],
            "stacked": [
                {"side": int(s.side), "low": s.low, "high": s.high, "rows": s.rows}
                for s in bar.stacked
            ],
            "unfinished_high": bar.unfinished_high,
            "unfinished_low": bar.unfinished_low,
            "big_trades": [
                {"ts_event": p.ts_event, "price": p.price, "size": p.size, "side": int(p.side)}
                for p in bar.big_trades
            ],
        }
    )


def tick(trade: Trade) -> dict[str, Any]:
    return finite(
        {
            "time": trade.ts_event / NS,
            "ts_event": trade.ts_event,
            "price": trade.price,
            "size": trade.size,
            "side": "buy" if trade.side > 0 else "sell",
            "side_source": int(trade.side_source),
            "size_kind": int(trade.size_kind),
            "trade_id": trade.trade_id,
        }
    )


def delta_point(bar: Bar, cumulative: float) -> dict[str, Any]:
    return finite(
        {
            "time": seconds(bar.open_ts),
            "value": cumulative,
            "bar_delta": bar.delta,
            "cvd": bar.cvd,
            "final": bar.final,
        }
    )


def book_stats(stats: BookStats) -> dict[str, Any]:
    view = plain(stats)
    view.pop("k", None)
    mid = (stats.best_bid + stats.best_ask) / 2 if stats.valid else None
    view["mid_price"] = mid
    return finite(view)
