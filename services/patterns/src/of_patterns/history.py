"""The closed bars a detector looks back on: one compact record per bar, the newest last.
Shared by the bar-based detectors, so each keeps only its own extra state.
"""

from __future__ import annotations

import itertools
from typing import Final

import msgspec

from ofcommon.messages import Bar, Side

# The seed's contrarian ratio (spec §6: its exhaustion check used 2.5, not the footprint's 3.0),
# read on one row (the seed's horizontal comparison).
CONTRARIAN_RATIO: Final = 2.5
ZONE: Final = 0.3  # the share of a bar's range that counts as its top or bottom


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
    # Contrarian rows near the extremes (exhaustion's test, ``contrarian_rows``): bid-dominant
    # rows in the top 30 % of the range, ask-dominant rows in the bottom 30 %.
    sell_imbalances_top: int = 0
    buy_imbalances_bottom: int = 0
    imbalance_rows: int = 0
    footprint_rows: int = 0


def point(bar: Bar) -> BarPoint:
    sell_top, buy_bottom = contrarian_rows(bar)
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
        sell_imbalances_top=sell_top,
        buy_imbalances_bottom=buy_bottom,
        imbalance_rows=len(bar.imbalances),
        footprint_rows=len(bar.footprint),
    )


def contrarian_rows(bar: Bar) -> tuple[int, int]:
    """Rows where sellers dominate in the top ``ZONE`` of the bar's range, and buyers in the
    bottom: a row with the footprint's own imbalance of that side (analytics' diagonal rule), or
    whose other side traded at most 1 / ``CONTRARIAN_RATIO`` of it on the same row (the seed's
    test). A one-sided row is not an imbalance (the seed counted a lone 1-lot print, §19)."""
    rng = bar.high - bar.low
    top = bar.high - ZONE * rng
    bottom = bar.low + ZONE * rng
    # A row is named by its lowest price and spans up to the next row's: it reaches the top zone
    # when its span does.
    prices = sorted(r.price for r in bar.footprint)
    row = min((b - a for a, b in itertools.pairwise(prices)), default=0.0)
    sell = {i.price for i in bar.imbalances if i.side == Side.SELL and i.price + row > top}
    buy = {i.price for i in bar.imbalances if i.side == Side.BUY and i.price <= bottom}
    for r in bar.footprint:
        if r.price + row > top and _dominates(r.bid_volume, r.ask_volume):
            sell.add(r.price)
        if r.price <= bottom and _dominates(r.ask_volume, r.bid_volume):
            buy.add(r.price)
    return len(sell), len(buy)


def _dominates(side: float, other: float) -> bool:
    return other > 0.0 and side >= CONTRARIAN_RATIO * other
