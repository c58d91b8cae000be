"""Hand-built analytics outputs for the pattern detectors' tests: closed bars, consumption events
and book statistics of NAS100USDT (tick 0.1; fixed thresholds M = 50, delta 30, body 3 ticks).
"""

from __future__ import annotations

from collections.abc import Sequence

from ofcommon.instruments import Instrument, load_registry
from ofcommon.messages import Bar, BookStats, Consumption, FootprintRow, ImbalanceRow, Side

SYMBOL = "NAS100USDT"
INST: Instrument = load_registry().get(SYMBOL)
TICK = 0.1
S = 1_000_000_000
MIN = 60 * S
T0 = 1_709_649_000 * S  # 2024-03-05T14:30:00Z


def bar(
    i: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    volume: float,
    delta: float,
    *,
    cvd: float = 0.0,
    rows: Sequence[FootprintRow] = (),
    imbalances: Sequence[ImbalanceRow] = (),
    final: bool = True,
    timeframe: str = "1m",
    gapped: bool = False,
    rev: int = 1,
) -> Bar:
    """The closed 1-minute bar number ``i`` after ``T0``."""
    buy = (volume + delta) / 2
    return Bar(
        timeframe=timeframe,
        open_ts=T0 + i * MIN,
        close_ts=T0 + (i + 1) * MIN,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=volume,
        buy_volume=buy,
        sell_volume=volume - buy,
        delta=delta,
        delta_min=min(0.0, delta),
        delta_max=max(0.0, delta),
        trades=10,
        vwap=(h + lo) / 2,
        poc=(h + lo) / 2,
        footprint=list(rows),
        final=final,
        rev=rev,
        cvd=cvd,
        cvd_total=cvd,
        imbalances=list(imbalances),
        gapped=gapped,
    )


def background(
    n: int, *, start: int = 0, price: float = 18000.0, volume: float = 20.0
) -> list[Bar]:
    """Quiet bars: a 3-tick range around ``price``, alternating small deltas, no footprint."""
    out = []
    for k in range(n):
        sign = 1 if k % 2 else -1
        o, c = (price, price + 0.1) if sign > 0 else (price + 0.1, price)
        out.append(bar(start + k, o, price + 0.2, price - 0.1, c, volume, 2.0 * sign))
    return out


def take(ts: int, side: Side, price: float, size: float, *, refilled: bool = False) -> Consumption:
    """Size ``size`` at ``price`` removed by trades of aggressor ``side``."""
    return Consumption(
        ts_event=ts,
        side=side,
        price=price,
        removed=size,
        traded=size,
        cancelled=0.0,
        refilled=refilled,
    )


def book(ts: int, bid: float, ask: float, thin: Sequence[float] = ()) -> BookStats:
    return BookStats(ts_event=ts, valid=True, best_bid=bid, best_ask=ask, thin_levels=list(thin))
