"""Bars, footprints and the session profile of the real CME ESH4 trades against a plain aggregation
of the same file written here, without the engines (tick 0.25, rows of 1 and 4 ticks).

Side rule for prints without an aggressor (``N``, the opening cross): the product's rule for a
trade without an exchange side, the MT5 feed's tick test (``of_feed_mt5.side.TradeClassifier``,
``SideSource.TICK_RULE``): the side of the last price move; a print that nothing earlier can sign
is dropped, as the MT5 parser drops it. The plain aggregation applies the same rule, written out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import msgspec
import pytest
from tests.support.real_data import CME_ESH4_TRADES, require

from of_analytics.bars import COMPOSED, TIMEFRAMES, BarBuilder
from of_analytics.profile import SessionProfiler
from of_feed_mt5.constants import TICK_FLAG_BUY, TICK_FLAG_SELL
from of_feed_mt5.side import TradeClassifier
from ofcommon.instruments import Instrument, load_registry
from ofcommon.messages import Bar, Side, SideSource, Trade
from ofcommon.sessions import SESSIONS

DAY = TIMEFRAMES["1D"]
CME_DAY_OPEN = 1_703_541_600 * 1_000_000_000  # 2023-12-25T22:00:00Z = 17:00 EST, Globex reopens


class Row(NamedTuple):
    ts: int
    recv: int
    price: str
    size: int
    side: str  # B (buy aggressor), A (sell aggressor), N (none)
    seq: int


def rows() -> list[Row]:
    with require(CME_ESH4_TRADES).open(newline="") as f:
        return [
            Row(
                int(r["ts_event_ns"]),
                int(r["ts_recv_ns"]),
                r["price"],
                int(r["size"]),
                r["aggressor_side"],
                int(r["sequence"]),
            )
            for r in csv.DictReader(f)
        ]


def es(row_size: float) -> Instrument:
    """The registry's S&P 500 entry with the E-mini's real tick (the CFD entry quotes 0.1)."""
    sp500 = load_registry().get("SP500")
    # Bars and profile at the same row here: footprint rows of row_size / 0.25 ticks.
    fp = msgspec.structs.replace(sp500.footprint, row_ticks=round(row_size / 0.25))
    return msgspec.structs.replace(
        sp500, symbol="ESH4", tick_size=0.25, row_size=row_size, mt5=None, footprint=fp
    )


# --- the product path ----------------------------------------------------------------------------

_FLAGS = {"B": TICK_FLAG_BUY, "A": TICK_FLAG_SELL, "N": 0}


def product_trades(raw: list[Row]) -> tuple[list[Trade], list[int]]:
    """The trades a feed publishes, and the indexes of the rows it could not sign."""
    classifier = TradeClassifier("tick_rule")
    out: list[Trade] = []
    dropped: list[int] = []
    for i, r in enumerate(raw):
        decided = classifier.classify(float(r.price), _FLAGS[r.side], 0.0, 0.0)
        if decided is None:
            dropped.append(i)
            continue
        side, source = decided
        # CME repeats a match event's sequence on each of its prints: the row makes the id unique.
        out.append(
            Trade(r.ts, r.recv, float(r.price), float(r.size), side, f"{r.seq}.{i}", source, r.seq)
        )
    return out, dropped


# --- the plain aggregation -----------------------------------------------------------------------


@dataclass
class Plain:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int = 0
    buy: int = 0
    sell: int = 0
    trades: int = 0
    delta: int = 0
    delta_min: int = 0
    delta_max: int = 0
    pv: Decimal = Decimal(0)
    cells: dict[Decimal, list[int]] = field(default_factory=dict)  # row -> [bid, ask, count]


def plain_sides(raw: list[Row]) -> Iterator[tuple[Row, bool]]:
    """(row, is buy) of every signed row: B buys, A sells, N takes the last price move."""
    last: Decimal | None = None
    move = 0
    for r in raw:
        price = Decimal(r.price)
        if last is not None and price != last:
            move = 1 if price > last else -1
        last = price
        if r.side in ("B", "A"):
            yield r, r.side == "B"
        elif move:
            yield r, move > 0


def plain_bars(raw: list[Row], period: int, row: Decimal, origin: int = 0) -> dict[int, Plain]:
    """Bars of ``period`` counted from ``origin`` (the epoch, or the trading day's open)."""
    bars: dict[int, Plain] = {}
    for r, buy in plain_sides(raw):
        price = Decimal(r.price)
        start = r.ts - (r.ts - origin) % period
        b = bars.get(start)
        if b is None:
            b = bars[start] = Plain(price, price, price, price)
        b.high, b.low, b.close = max(b.high, price), min(b.low, price), price
        b.volume += r.size
        b.trades += 1
        b.pv += price * r.size
        if buy:
            b.buy += r.size
            b.delta += r.size
        else:
            b.sell += r.size
            b.delta -= r.size
        if b.trades == 1:
            b.delta_min = b.delta_max = b.delta
        b.delta_min, b.delta_max = min(b.delta_min, b.delta), max(b.delta_max, b.delta)
        cell = b.cells.setdefault((price // row) * row, [0, 0, 0])
        cell[1 if buy else 0] += r.size
        cell[2] += 1
    return bars


def plain_poc(b: Plain, row: Decimal) -> Decimal:
    """Most volume; a tie goes to the row nearest the middle of the bar's rows, then the lower."""
    vol = {k: c[0] + c[1] for k, c in b.cells.items()}
    best = max(vol.values())
    mid2 = (b.high // row) * row + (b.low // row) * row
    return min((k for k, v in vol.items() if v == best), key=lambda k: (abs(2 * k - mid2), k))


# --- tests ---------------------------------------------------------------------------------------


def test_only_the_opening_cross_lacks_a_side_and_it_is_dropped() -> None:
    raw = rows()
    assert len(raw) == 2973
    assert [i for i, r in enumerate(raw) if r.side == "N"] == [0]
    trades, dropped = product_trades(raw)
    # The first print has no aggressor and no earlier price to compare with: the feed drops it.
    assert dropped == [0]
    assert raw[0].size == 44
    assert len(trades) == len(raw) - 1 == sum(1 for _ in plain_sides(raw))
    assert all(t.side_source is SideSource.EXCHANGE for t in trades)
    signed = [(r.ts, Decimal(r.price), buy) for r, buy in plain_sides(raw)]
    assert [(t.ts_event, Decimal(str(t.price)), t.side is Side.BUY) for t in trades] == signed


def test_a_print_without_side_takes_the_last_price_move() -> None:
    # The rule both paths share, on rows shaped like the file's (the file itself has one N only).
    base = rows()[1:4]
    up = Row(base[2].ts, base[2].recv, "4801.00", 3, "N", base[2].seq)
    down = up._replace(price="4800.00")
    same = down._replace(size=2)
    raw = [*base, up, down, same]
    trades, dropped = product_trades(raw)
    assert dropped == []
    plain = [buy for _, buy in plain_sides(raw)]
    assert [t.side is Side.BUY for t in trades] == plain
    assert plain[3:] == [True, False, False]
    assert [t.side_source for t in trades[3:]] == [SideSource.TICK_RULE] * 3


@pytest.mark.parametrize("row_size", [0.25, 1.0])
def test_real_esh4_bars_and_footprints_equal_a_plain_aggregation(row_size: float) -> None:
    raw = rows()
    trades, _ = product_trades(raw)
    builder = BarBuilder.for_instrument(es(row_size), composed=COMPOSED)
    state = builder.initial()
    bars = builder.on_trades(state, trades)
    bars += builder.advance(state, trades[-1].ts_event + 2 * DAY)
    assert state.late_trades == 0
    row = Decimal(str(row_size))
    for tf in ("1m", *COMPOSED):
        ours = [b for b in bars if b.timeframe == tf]
        # 4h and 1D bars count from the CME trading day's open, 17:00 New York (22:00 UTC).
        origin = CME_DAY_OPEN if tf in ("4h", "1D") else 0
        plain = plain_bars(raw, TIMEFRAMES[tf], row, origin)
        assert [b.open_ts for b in ours] == sorted(plain), tf
        for bar in ours:
            assert_bar(bar, plain[bar.open_ts], TIMEFRAMES[tf], row)
    one = [b for b in bars if b.timeframe == "1m"]
    assert len(one) == 60
    assert sum(b.volume for b in one) == sum(r.size for r in raw) - raw[0].size


def assert_bar(bar: Bar, p: Plain, period: int, row: Decimal) -> None:
    where = f"{bar.timeframe} bar at {bar.open_ts}"
    assert (bar.close_ts - bar.open_ts, bar.final, bar.rev) == (period, True, 1), where
    assert (bar.open, bar.high, bar.low, bar.close) == tuple(
        float(x) for x in (p.open, p.high, p.low, p.close)
    ), where
    # Sizes are whole contracts and prices quarter points: every sum is exact in binary.
    assert (bar.volume, bar.buy_volume, bar.sell_volume, bar.delta) == (
        p.volume,
        p.buy,
        p.sell,
        p.delta,
    ), where
    assert (bar.trades, bar.delta_min, bar.delta_max) == (p.trades, p.delta_min, p.delta_max), where
    assert bar.vwap == pytest.approx(float(p.pv / p.volume), rel=1e-12), where
    assert Decimal(str(bar.poc)) == plain_poc(p, row), where
    cells = [(Decimal(str(r.price)), [r.bid_volume, r.ask_volume, r.trades]) for r in bar.footprint]
    assert cells == sorted(p.cells.items()), where


def plain_value_area(vols: dict[int, int], pct: float) -> tuple[int, int, int]:
    """(val, poc, vah) row indexes by the two-row rule on the dense ladder of rows.

    POC: most volume, ties to the row nearest the ladder's middle (two equally near: the one on
    the side holding more volume, else the lower). Then, from the POC, add the two rows above or
    the two below, whichever hold more (a tie goes up), until ``pct`` of the volume is inside.
    """
    ladder = {k: vols.get(k, 0) for k in range(min(vols), max(vols) + 1)}
    top = max(ladder.values())
    mid2 = min(ladder) + max(ladder)
    tied = [k for k, v in ladder.items() if v == top]
    near = min(abs(2 * k - mid2) for k in tied)
    nearest = [k for k in tied if abs(2 * k - mid2) == near]
    poc = nearest[0]
    if len(nearest) == 2:
        below = sum(v for k, v in ladder.items() if 2 * k < mid2)
        above = sum(v for k, v in ladder.items() if 2 * k > mid2)
        poc = nearest[1] if above > below else nearest[0]
    total = sum(ladder.values())
    lo = hi = poc
    while sum(ladder[k] for k in range(lo, hi + 1)) < pct * total:
        ups = [k for k in (hi + 1, hi + 2) if k in ladder]
        downs = [k for k in (lo - 1, lo - 2) if k in ladder]
        if ups and (not downs or sum(ladder[k] for k in ups) >= sum(ladder[k] for k in downs)):
            hi = max(ups)
        else:
            lo = min(downs)
    return lo, poc, hi


@pytest.mark.parametrize("row_size", [0.25, 1.0])
def test_real_esh4_session_profile_equals_a_plain_histogram(row_size: float) -> None:
    raw = rows()
    trades, _ = product_trades(raw)
    # The file's hour (18:00-19:00 New York) lies outside NY cash hours: profile it as one UTC day.
    profiler = SessionProfiler(es(row_size), spec=SESSIONS["FULL_DAY"])
    for t in trades:
        assert profiler.on_trade(t) == []
    s = profiler.stats()
    row = Decimal(str(row_size))
    vols: dict[int, int] = {}
    for r, _buy in plain_sides(raw):
        k = int(Decimal(r.price) // row)
        vols[k] = vols.get(k, 0) + r.size
    assert [(Decimal(str(p)), v) for p, v in s.rows if v] == [
        (k * row, v) for k, v in sorted(vols.items())
    ]
    assert s.volume == sum(vols.values())
    val, poc, vah = plain_value_area(vols, 0.70)
    assert (Decimal(str(s.val)), Decimal(str(s.poc)), Decimal(str(s.vah))) == (
        val * row,
        poc * row,
        vah * row,
    )
    assert s.va_volume >= 0.70 * s.volume
    assert s.val <= s.poc <= s.vah
    assert vols[poc] == max(vols.values())
