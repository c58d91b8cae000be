"""The closed bars a detector looks back on: one compact record per bar, the newest last.
Shared by the bar-based detectors, so each keeps only its own extra state.
"""

from __future__ import annotations

import itertools

import msgspec

from ofcommon.messages import Bar, Side


class BarPoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    open_ts: int
    close_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    delta: float
    cvd: float  # continuous cumulative delta as of the bar's last trade
    # Footprint imbalances near the extremes (for exhaustion's contrarian test): count of
    # bid-dominant (SELL) rows in the top 30 % of the range, ask-dominant (BUY) in the bottom 30 %.
    sell_imbalances_top: int = 0
    buy_imbalances_bottom: int = 0
    imbalance_rows: int = 0
    footprint_rows: int = 0


def point(bar: Bar) -> BarPoint:
    rng = bar.high - bar.low
    top = bar.high - 0.3 * rng
    bottom = bar.low + 0.3 * rng
    # A row is named by its lowest price and spans up to the next row's: it reaches the top zone
    # when its span does.
    prices = sorted(r.price for r in bar.footprint)
    row = min((b - a for a, b in itertools.pairwise(prices)), default=0.0)
    return BarPoint(
        open_ts=bar.open_ts,
        close_ts=bar.close_ts,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        delta=bar.delta,
        cvd=bar.cvd_total,
        sell_imbalances_top=sum(
            1 for i in bar.imbalances if i.side == Side.SELL and i.price + row > top
        ),
        buy_imbalances_bottom=sum(
            1 for i in bar.imbalances if i.side == Side.BUY and i.price <= bottom
        ),
        imbalance_rows=len(bar.imbalances),
        footprint_rows=len(bar.footprint),
    )
