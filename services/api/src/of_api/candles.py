"""Bars on any timeframe from closed 1-minute bars plus the open one: the chart's seam, pure.

History is stored 1m bars; the open bar comes from the stream; higher timeframes compose both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ofcommon.messages import Bar, FootprintRow
from ofcommon.timeframes import bucket
from ofcommon.tradingday import TradingDay


def with_open_bar(closed: Sequence[Bar], partial: Bar | None) -> list[Bar]:
    """``closed`` (oldest first) followed by the open 1m ``partial`` when it opens after the last
    closed bar (a partial already closed in ``closed`` is stale and left out)."""
    out = list(closed)
    if partial is None or partial.final:
        return out
    if out and partial.open_ts <= out[-1].open_ts:
        return out
    out.append(partial)
    return out


def merge_footprint(bars: Iterable[Bar]) -> list[FootprintRow]:
    """The summed footprint rows of ``bars`` by price, ascending."""
    rows: dict[float, list[float]] = {}
    for bar in bars:
        for r in bar.footprint:
            acc = rows.setdefault(r.price, [0.0, 0.0, 0.0])
            acc[0] += r.bid_volume
            acc[1] += r.ask_volume
            acc[2] += r.trades
    return [FootprintRow(p, b, a, int(n)) for p, (b, a, n) in sorted(rows.items())]


def compose_one(timeframe: str, open_ts: int, close_ts: int, parts: Sequence[Bar]) -> Bar:
    """One ``timeframe`` bar [open_ts, close_ts) from its 1m ``parts`` (oldest first). Final when
    every part is final and the last one closes the bucket. Imbalances, stacked runs and
    unfinished auctions are 1m facts and are not recomputed here."""
    first, last = parts[0], parts[-1]
    volume = sum(b.volume for b in parts)
    delta = 0.0
    low_path, high_path = 0.0, 0.0
    for b in parts:  # the intrabar delta path: each bar's extremes on top of what came before
        low_path = min(low_path, delta + b.delta_min)
        high_path = max(high_path, delta + b.delta_max)
        delta += b.delta
    footprint = merge_footprint(parts)
    poc = max(footprint, key=lambda r: r.bid_volume + r.ask_volume).price if footprint else last.poc
    vwap = sum(b.vwap * b.volume for b in parts) / volume if volume > 0 else last.close
    return Bar(
        timeframe,
        open_ts,
        close_ts,
        first.open,
        max(b.high for b in parts),
        min(b.low for b in parts),
        last.close,
        volume,
        sum(b.buy_volume for b in parts),
        sum(b.sell_volume for b in parts),
        delta,
        low_path,
        high_path,
        sum(b.trades for b in parts),
        vwap,
        poc,
        footprint,
        all(b.final for b in parts) and last.close_ts >= close_ts,
        cvd=last.cvd,
        cvd_total=last.cvd_total,
        big_trades=[p for b in parts for p in b.big_trades],
        gapped=any(b.gapped for b in parts),
    )


def compose(bars: Sequence[Bar], timeframe: str, day: TradingDay | None) -> list[Bar]:
    """``bars`` (1m, oldest first) on ``timeframe``; 1m is returned as it is."""
    if timeframe == "1m":
        return list(bars)
    out: list[Bar] = []
    group: list[Bar] = []
    span = (0, 0)
    for b in bars:
        here = bucket(timeframe, b.open_ts, day)
        if group and here != span:
            out.append(compose_one(timeframe, span[0], span[1], group))
            group = []
        span = here
        group.append(b)
    if group:
        out.append(compose_one(timeframe, span[0], span[1], group))
    return out
