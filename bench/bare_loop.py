"""The bare-loop bound of the analytics fold: one plain Python pass over the same trades.
It computes 1-minute OHLCV, buy/sell volume and a per-row footprint dict, nothing more.

The fold does far more (throttled partial bars, developing profiles, book, dedup); this loop is
the yardstick issue 8 measures it against: the fold should reach a quarter of its rate.
"""

from __future__ import annotations

import time

from ofcommon.messages import Side, Trade

MINUTE_NS = 60_000_000_000

# (open_ts, open, high, low, close, volume, buy, sell, {row: [bid, ask]})
BareBar = tuple[int, float, float, float, float, float, float, float, dict[int, list[float]]]


def bare_bars(trades: list[Trade], tick_size: float, row_ticks: int) -> list[BareBar]:
    """The closed and open 1-minute bars of ``trades`` (in arrival order, as the fold gets them)."""
    inv_tick = 1.0 / tick_size
    buy_side = Side.BUY
    bars: list[BareBar] = []
    minute = -1
    o = h = lo = c = vol = buy = sell = 0.0
    rows: dict[int, list[float]] = {}
    for t in trades:
        m = t.ts_event // MINUTE_NS
        price, size = t.price, t.size
        if m != minute:
            if minute >= 0:
                bars.append((minute * MINUTE_NS, o, h, lo, c, vol, buy, sell, rows))
            minute, o, h, lo, vol, buy, sell, rows = m, price, price, price, 0.0, 0.0, 0.0, {}
        if price > h:
            h = price
        elif price < lo:
            lo = price
        c = price
        vol += size
        row = round(price * inv_tick) // row_ticks
        cell = rows.get(row)
        if cell is None:
            cell = rows[row] = [0.0, 0.0]
        if t.side is buy_side:
            buy += size
            cell[1] += size
        else:
            sell += size
            cell[0] += size
    if minute >= 0:
        bars.append((minute * MINUTE_NS, o, h, lo, c, vol, buy, sell, rows))
    return bars


def bare_once(trades: list[Trade], tick_size: float, row_ticks: int) -> tuple[float, int]:
    """Seconds of one bare pass over ``trades``, and the bars it made."""
    t0 = time.perf_counter()
    bars = bare_bars(trades, tick_size, row_ticks)
    return time.perf_counter() - t0, len(bars)
