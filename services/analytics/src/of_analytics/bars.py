"""Event-time bars with footprints: 1-minute bars from trades, higher timeframes composed from them.
Pure and deterministic (no clock, no I/O); the state is a msgspec Struct snapshotted as msgpack.

Rules decided here (the service and the docs repeat them):

* Bars are ``[open_ts, close_ts)`` aligned on the UTC epoch, except 1D and 4h: they align to the
  instrument's trading day (``Instrument.day_spec``, ofcommon.tradingday; without one, UTC days).
  A 1D bar is one trading day (23 or 25 hours across a DST change); 4h bars start at the day's
  roll every 4 hours, the last one cut at the next roll. A bar closes when the first trade or
  heartbeat at or past its ``close_ts`` arrives; the closed bar is emitted once, ``final=True``,
  ``rev=1``. Minutes without trades produce no bar. Higher timeframes (5m, 15m, 1h, 4h, 1D) are
  merged from closed base bars and close on the same event-time rule, so they equal bars built
  from the trades directly.
* ``open`` / ``close`` are the earliest / latest trade by event time, ties by arrival (the first
  to arrive opens, the last to arrive closes): a print that arrives out of order inside the bar
  moves high, low and the footprint but sets neither.
* Late trades: a trade older than the open bar (or, with no bar open, older than the last closed or
  heartbeat-passed bar) is never folded in: it is counted in ``BarsState.late_trades`` /
  ``late_volume`` (the service exports them as metrics) and emits nothing. Closed bars are final.
* ``SizeKind.TICKS`` trades (MT5 quote counts) move OHLC and event time but never volume, delta,
  VWAP or the footprint; they are counted apart in the accumulator's ``tick_count``.
* A ``Gap`` on the trades stream marks the open bar (or the next one to open) as gapped
  (``Bar.gapped``; the bars composed from it inherit the flag).
* Partial bars (``partial``) are non-final snapshots with ``rev=0``; the service throttles them.
* Footprint rows are ``row_size`` high, a whole number of ticks (``for_instrument``: the
  registry's ``footprint.row_ticks`` ticks of the Instrument's tick, not the profile row). A price
  is snapped to the nearest tick (absorbing float error), then floored to its row. Rows are
  listed by ascending price. The bar POC is the row of most volume; ties go to the row closest to
  the bar's middle, then the lower.
* ``delta_min`` / ``delta_max`` are the extremes of the running delta after each real trade.

Footprint analytics (wire version 2) ride on every bar, partial, final and composed:

* ``delta_at_high`` / ``delta_at_low``: ask − bid of the top / bottom footprint row.
* ``cvd`` / ``cvd_total``: session and continuous cumulative delta as of the bar's last trade. The
  session is the instrument's (``SessionSpec``, default the UTC day); a bar belongs to the session
  of its ``open_ts`` (``CumulativeDelta.enter``), so the first bar of a session restarts ``cvd``.
  A composed bar carries the values of its last base bar.
* ``imbalances`` / ``stacked`` / ``unfinished_*``: ``footprint.py`` over the bar's own footprint
  (composed bars: the merged footprint), computed when the bar is emitted, never per trade.
* ``big_trades``: real prints flagged by ``footprint.BigTrades`` as they arrive (the rolling
  threshold is per instrument, in ``BarsState.big``); composed bars concatenate them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import msgspec

from of_analytics.delta import CumulativeDelta, CvdState, rows_delta_at_extremes
from of_analytics.footprint import (
    DEFAULT,
    PRESETS,
    BigTradeParams,
    BigTrades,
    BigTradeState,
    Imbalance,
    ImbalanceParams,
    imbalances_at,
    rows_unfinished,
    stacked_imbalances,
)
from ofcommon.grid import NEAR_HALF, half_tick, row_label, tick_decimals, ticks_of
from ofcommon.instruments import Instrument
from ofcommon.messages import (
    Bar,
    BigPrint,
    FootprintRow,
    Gap,
    Heartbeat,
    ImbalanceRow,
    Message,
    Side,
    SizeKind,
    Trade,
)
from ofcommon.sessions import SESSIONS, SessionSpec
from ofcommon.timeframes import COMPOSED, TIMEFRAMES, bucket
from ofcommon.tradingday import TradingDay

__all__ = [
    "COMPOSED",
    "TIMEFRAMES",
    "BarAcc",
    "BarBuilder",
    "BarsState",
]

_MAX_GAPPED: Final = 64  # open times of gapped bars kept in state (bounded)
_MAX_MADE: Final = 4096  # footprint rows kept for reuse by the builder (bounded)

# Footprint cell layout: [bid volume (sell aggressors), ask volume (buy aggressors), trade count].
_BID: Final = 0
_ASK: Final = 1
_N: Final = 2


class BarAcc(msgspec.Struct, gc=False):
    """One open bar under construction; ``rows`` maps row index -> [bid, ask, trades]."""

    open_ts: int
    close_ts: int
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    volume: float = 0.0
    buy: float = 0.0
    sell: float = 0.0
    run_delta: float = 0.0
    delta_min: float = 0.0
    delta_max: float = 0.0
    trades: int = 0
    pv: float = 0.0
    tick_count: int = 0
    has_price: bool = False
    gap: bool = False
    rows: dict[int, list[float]] = msgspec.field(default_factory=dict)
    # Cumulative deltas: of a base bar the values before its first trade (its own run_delta is
    # added on emission), of a composed bar the values at the end of its last base bar.
    cvd: float = 0.0
    cvd_total: float = 0.0
    big: list[BigPrint] = msgspec.field(default_factory=list)
    # Event times of the trades that set ``open`` / ``close``: the earliest and the latest.
    open_at: int = 0
    close_at: int = 0
    # Delta of the bar's in-session trades: what it adds to the session CVD.
    sess_delta: float = 0.0


class BarsState(msgspec.Struct, gc=False):
    """Per-instrument bar state: the open base bar, the open composed bars and the late counters."""

    base: BarAcc | None = None
    # Trades older than this are late: the close of the last closed base bar, raised by heartbeats.
    floor_ts: int = 0
    composed: dict[str, BarAcc] = msgspec.field(default_factory=dict)
    late_trades: int = 0
    late_volume: float = 0.0
    gaps: int = 0
    gap_pending: bool = False
    gapped: list[int] = msgspec.field(default_factory=list)
    # Totals of the closed base bars (session reset by CumulativeDelta.enter at each bar open).
    cvd: CvdState = msgspec.field(default_factory=CvdState)
    big: BigTradeState = msgspec.field(default_factory=BigTradeState)


class BarBuilder:
    """Builds bars of one instrument; all methods are pure functions of (state, input)."""

    __slots__ = (
        "_big",
        "_cvd",
        "_day",
        "_digits",
        "_imb",
        "_period",
        "_row_size",
        "_rows",
        "_tick",
        "_tpr",
        "base",
        "composed",
    )

    def __init__(
        self,
        tick_size: float,
        row_size: float,
        *,
        base: str = "1m",
        composed: Iterable[str] = COMPOSED,
        session: SessionSpec | None = None,
        imbalance: ImbalanceParams = DEFAULT,
        big_trades: BigTradeParams | None = None,
        day: TradingDay | None = None,
    ) -> None:
        tpr = round(row_size / tick_size)
        if tpr < 1 or abs(row_size / tick_size - tpr) > 1e-6:
            raise ValueError(f"row_size {row_size} is not a whole multiple of tick {tick_size}")
        self._tpr = int(tpr)
        self._tick = tick_size
        self._row_size = row_size
        # Row labels follow the one rule of ofcommon.grid (the tick's own decimals).
        self._digits = tick_decimals(tick_size)
        self.base = base
        self._period = TIMEFRAMES[base]
        self.composed = tuple(composed)
        for tf in self.composed:
            if TIMEFRAMES[tf] <= self._period or TIMEFRAMES[tf] % self._period:
                raise ValueError(f"timeframe {tf} is not a multiple of the base {base}")
        # Without a session the session CVD resets at each UTC midnight (FULL_DAY).
        self._cvd = CumulativeDelta(session or SESSIONS["FULL_DAY"])
        self._imb = imbalance
        self._big = BigTrades(big_trades)
        self._day = day
        self._rows: dict[int, FootprintRow] = {}  # the last footprint row built per row index

    @classmethod
    def for_instrument(
        cls,
        inst: Instrument,
        *,
        composed: Iterable[str] = COMPOSED,
        imbalance: ImbalanceParams | None = None,
        big_trades: BigTradeParams | None = None,
    ) -> BarBuilder:
        """The instrument's grid, session and footprint parameters (registry ``footprint``);
        ``imbalance`` / ``big_trades`` override the registry's."""
        fp = inst.footprint
        if imbalance is None:
            imbalance = msgspec.structs.replace(
                PRESETS[fp.imbalance_preset], stacked_rows=fp.stacked_rows
            )
            if fp.imbalance_ratio is not None:
                imbalance = msgspec.structs.replace(imbalance, ratio=fp.imbalance_ratio)
            if fp.imbalance_min_volume is not None:
                imbalance = msgspec.structs.replace(imbalance, min_volume=fp.imbalance_min_volume)
        if big_trades is None:
            big_trades = BigTradeParams(
                fixed=fp.big_trade_size,
                percentile=fp.big_trade_percentile,
                window=fp.big_trade_window,
            )
        return cls(
            inst.tick_size,
            inst.footprint_row,
            composed=composed,
            session=inst.session_spec,
            imbalance=imbalance,
            big_trades=big_trades,
            day=inst.day_spec,
        )

    @staticmethod
    def initial() -> BarsState:
        return BarsState()

    def bucket(self, timeframe: str, ts: int) -> tuple[int, int]:
        """[open_ts, close_ts) of the ``timeframe`` bar containing ``ts``."""
        return bucket(timeframe, ts, self._day)

    def row_of(self, price: float) -> int:
        """The footprint row index of ``price``: nearest tick, then floor to the row."""
        return ticks_of(price, self._tick) // self._tpr

    def row_price(self, row: int) -> float:
        return row_label(row, self._row_size, self._digits)

    # --- inputs ------------------------------------------------------------------------------

    def step(self, state: BarsState, msg: Message) -> list[Bar]:
        """Fold one message of the trades stream; returns the bars it closed (oldest first)."""
        if isinstance(msg, Trade):
            return self.on_trade(state, msg)
        if isinstance(msg, Heartbeat):
            return self.advance(state, msg.ts_event)
        if isinstance(msg, Gap):
            self.on_gap(state, msg)
        return []

    def on_trade(self, state: BarsState, trade: Trade) -> list[Bar]:
        ts = trade.ts_event
        acc = state.base
        out: list[Bar] = []
        if acc is None or not acc.open_ts <= ts < acc.close_ts:
            out, acc = self._roll(state, trade)
            if acc is None:
                return out
        price = trade.price
        _move_price(acc, ts, price)
        if trade.size_kind is SizeKind.TICKS:
            acc.tick_count += 1
            return out
        size = trade.size
        if self._big.on_trade(state.big, trade):
            acc.big.append(BigPrint(ts, price, size, trade.side))
        q = price / self._tick  # ofcommon.grid.ticks_of, inlined (its half-tick rule too)
        t = round(q)
        r = (t if abs(q - t) < NEAR_HALF else half_tick(price, self._tick)) // self._tpr
        cell = acc.rows.get(r)
        if cell is None:
            cell = acc.rows[r] = [0.0, 0.0, 0.0]
        if trade.side is Side.BUY:
            acc.buy += size
            cell[_ASK] += size
            signed = size
        else:
            acc.sell += size
            cell[_BID] += size
            signed = -size
        cell[_N] += 1.0
        d = acc.run_delta + signed
        cvd = state.cvd
        # Out-of-hours trades go into the continuous CVD only (no branch: a hot path).
        acc.sess_delta += signed * (cvd.session_start <= ts < cvd.session_end)
        acc.run_delta = d
        if acc.trades == 0:
            acc.delta_min = acc.delta_max = d
        elif d < acc.delta_min:
            acc.delta_min = d
        elif d > acc.delta_max:
            acc.delta_max = d
        acc.trades += 1
        acc.volume += size
        acc.pv += price * size
        return out

    def on_trades(self, state: BarsState, trades: Iterable[Trade]) -> list[Bar]:
        out: list[Bar] = []
        for t in trades:
            closed = self.on_trade(state, t)
            if closed:
                out.extend(closed)
        return out

    def on_gap(self, state: BarsState, gap: Gap) -> None:
        if gap.stream != "trades":
            return
        state.gaps += 1
        if state.base is not None:
            self._mark_gap(state, state.base)
        else:
            state.gap_pending = True

    def advance(self, state: BarsState, ts: int) -> list[Bar]:
        """Event time reached ``ts``: close every open bar whose end is at or before it."""
        out: list[Bar] = []
        acc = state.base
        if acc is not None and ts >= acc.close_ts:
            state.base = None
            state.floor_ts = acc.close_ts
            cvd = state.cvd
            cvd.session_cvd = acc.cvd + acc.sess_delta
            cvd.cvd = acc.cvd_total + acc.run_delta
            cvd.last_open_ts = acc.open_ts
            out.append(self._to_bar(acc, self.base, final=True))
            self._compose(state, acc, out)
        bucket = self.bucket(self.base, ts)[0]
        if bucket > state.floor_ts and state.base is None:
            state.floor_ts = bucket
        for tf in self.composed:
            c = state.composed.get(tf)
            if c is not None and ts >= c.close_ts:
                del state.composed[tf]
                out.append(self._to_bar(c, tf, final=True))
        return out

    def partial(self, state: BarsState, timeframe: str | None = None) -> Bar | None:
        """The open bar of ``timeframe`` (default: the base) as a non-final snapshot, or None."""
        tf = timeframe or self.base
        if tf == self.base:
            return None if state.base is None else self._to_bar(state.base, tf, final=False)
        c = state.composed.get(tf)
        base = state.base
        if base is None:
            return None if c is None else self._to_bar(c, tf, final=False)
        # The composed bar plus the open base bar: a throwaway merge, not stored in state.
        tmp = BarAcc(*self.bucket(tf, base.open_ts))
        if c is not None:
            _merge(tmp, c)
        _merge(tmp, base)
        tmp.cvd, tmp.cvd_total = base.cvd + base.sess_delta, base.cvd_total + base.run_delta
        return self._to_bar(tmp, tf, final=False)

    def seed(self, state: BarsState, closed: Iterable[Bar]) -> None:
        """Install stored closed base bars (oldest first, none open) as if folded: the open
        composed bars absorb them and event time stands at the last one's close. Outputs they
        would cause were published before, so none are returned.

        VWAP sums come back as ``vwap * volume``, equal to the folded sum up to rounding; the
        cumulative deltas are the stored bars' own."""
        discard: list[Bar] = []
        for bar in closed:
            if bar.timeframe != self.base or not bar.final:
                raise ValueError(f"seed takes final {self.base} bars, got {bar.timeframe!r}")
            acc = BarAcc(bar.open_ts, bar.close_ts, bar.open, bar.high, bar.low, bar.close)
            acc.volume, acc.buy, acc.sell = bar.volume, bar.buy_volume, bar.sell_volume
            acc.run_delta, acc.delta_min, acc.delta_max = bar.delta, bar.delta_min, bar.delta_max
            acc.trades, acc.pv, acc.has_price = bar.trades, bar.vwap * bar.volume, True
            # The stored bar carries both cumulative deltas as of its close: exact, not re-summed.
            # A base bar lies wholly in or out of the session (sessions open on the minute).
            self._cvd.enter(state.cvd, bar.open_ts)
            in_session = state.cvd.session_start <= bar.open_ts
            acc.sess_delta = bar.delta if in_session else 0.0
            acc.cvd, acc.cvd_total = bar.cvd - acc.sess_delta, bar.cvd_total - bar.delta
            state.cvd.session_cvd, state.cvd.cvd = bar.cvd, bar.cvd_total
            state.cvd.last_open_ts = bar.open_ts
            for fp in bar.footprint:
                cell = acc.rows.setdefault(self.row_of(fp.price), [0.0, 0.0, 0.0])
                cell[_BID] += fp.bid_volume
                cell[_ASK] += fp.ask_volume
                cell[_N] += fp.trades
            self._compose(state, acc, discard)
            state.floor_ts = max(state.floor_ts, acc.close_ts)
        self.advance(state, state.floor_ts)

    def observe(self, state: BarsState, trade: Trade) -> None:
        """Feed a trade already counted in stored bars to the big-trade window only, as folding it
        did (a rebuild replaying the stream before its cut; a trade that was late then is fed
        too, the one way this differs from the fold)."""
        if trade.size_kind is SizeKind.REAL:
            self._big.on_trade(state.big, trade)

    # --- internals ---------------------------------------------------------------------------

    def _roll(self, state: BarsState, trade: Trade) -> tuple[list[Bar], BarAcc | None]:
        """A trade outside the open bar: (closed bars, the bar to fold it into or None if late)."""
        ts = trade.ts_event
        acc = state.base
        if ts < (state.floor_ts if acc is None else acc.open_ts):
            return self._late(state, trade), None
        # Past the open bar's close (the caller checked) or no bar open; in the latter case too,
        # composed bars may end before this trade.
        return self.advance(state, ts), self._open_base(state, ts, trade.price)

    def _late(self, state: BarsState, trade: Trade) -> list[Bar]:
        state.late_trades += 1
        if trade.size_kind is SizeKind.REAL:
            state.late_volume += trade.size
        return []

    def _open_base(self, state: BarsState, ts: int, price: float) -> BarAcc:
        start, end = self.bucket(self.base, ts)
        acc = BarAcc(start, end, price, price, price, price, has_price=True)
        acc.open_at = acc.close_at = ts
        state.base = acc
        cvd = state.cvd
        self._cvd.enter(cvd, start)
        acc.cvd, acc.cvd_total = cvd.session_cvd, cvd.cvd
        if state.gap_pending:
            state.gap_pending = False
            self._mark_gap(state, acc)
        return acc

    @staticmethod
    def _mark_gap(state: BarsState, acc: BarAcc) -> None:
        if not acc.gap:
            acc.gap = True
            state.gapped.append(acc.open_ts)
            del state.gapped[:-_MAX_GAPPED]

    def _compose(self, state: BarsState, acc: BarAcc, out: list[Bar]) -> None:
        for tf in self.composed:
            c = state.composed.get(tf)
            if c is not None and acc.open_ts >= c.close_ts:
                del state.composed[tf]
                out.append(self._to_bar(c, tf, final=True))
                c = None
            if c is None:
                c = state.composed[tf] = BarAcc(*self.bucket(tf, acc.open_ts))
            _merge(c, acc)
            c.cvd, c.cvd_total = acc.cvd + acc.sess_delta, acc.cvd_total + acc.run_delta

    def _to_bar(self, acc: BarAcc, timeframe: str, *, final: bool) -> Bar:
        rows = acc.rows
        fp: list[FootprintRow] = []
        found: list[Imbalance] = []
        poc = acc.close
        if rows:
            keys = sorted(rows)
            fp = self._footprint(rows, keys)
            poc = self.row_price(self._poc_row(acc, keys))
            found = imbalances_at(keys, fp, self._imb)
        vwap = acc.pv / acc.volume if acc.volume > 0 else acc.close
        if timeframe == self.base:
            cvd, cvd_total = acc.cvd + acc.sess_delta, acc.cvd_total + acc.run_delta
        else:
            cvd, cvd_total = acc.cvd, acc.cvd_total
        # Rows are listed by ascending row index, so by ascending label.
        at_high, at_low = rows_delta_at_extremes(fp, ascending=True)
        unfinished_high, unfinished_low = rows_unfinished(fp, ascending=True)
        return Bar(
            timeframe,
            acc.open_ts,
            acc.close_ts,
            acc.open,
            acc.high,
            acc.low,
            acc.close,
            acc.volume,
            acc.buy,
            acc.sell,
            acc.buy - acc.sell,
            acc.delta_min,
            acc.delta_max,
            acc.trades,
            vwap,
            poc,
            fp,
            final,
            1 if final else 0,
            delta_at_high=at_high,
            delta_at_low=at_low,
            cvd=cvd,
            cvd_total=cvd_total,
            imbalances=[
                ImbalanceRow(i.price, i.side, _ratio(i.dominant, i.opposite)) for i in found
            ],
            stacked=stacked_imbalances(found, self._row_size, self._imb.stacked_rows),
            unfinished_high=unfinished_high,
            unfinished_low=unfinished_low,
            big_trades=list(acc.big),
            gapped=acc.gap,
        )

    def _footprint(self, rows: dict[int, list[float]], keys: list[int]) -> list[FootprintRow]:
        """The footprint rows of ``rows`` in ``keys`` order. Rows are immutable values, so one
        unchanged since the last bar built (a partial re-published every 250 ms, mostly the
        same rows) is reused instead of re-labelled and re-built."""
        made = self._rows
        if len(made) > _MAX_MADE:
            made.clear()
        fp: list[FootprintRow] = []
        append = fp.append
        for k in keys:
            bid, ask, n = rows[k]
            row = made.get(k)
            if row is None or row.bid_volume != bid or row.ask_volume != ask or row.trades != n:
                row = made[k] = FootprintRow(self.row_price(k), bid, ask, int(n))
            append(row)
        return fp

    def _poc_row(self, acc: BarAcc, keys: list[int]) -> int:
        rows = acc.rows
        best = max(rows[k][_BID] + rows[k][_ASK] for k in keys)
        tied = [k for k in keys if rows[k][_BID] + rows[k][_ASK] == best]
        if len(tied) == 1:
            return tied[0]
        # Twice the middle row index, so that a middle between two rows stays an integer.
        mid2 = self.row_of(acc.high) + self.row_of(acc.low)
        return min(tied, key=lambda k: (abs(2 * k - mid2), k))


def _move_price(acc: BarAcc, ts: int, price: float) -> None:
    """High, low, and open / close by event time, ties by arrival (an out-of-order print inside
    the bar sets neither open nor close)."""
    if price > acc.high:
        acc.high = price
    elif price < acc.low:
        acc.low = price
    if ts >= acc.close_at:
        acc.close = price
        acc.close_at = ts
    elif ts < acc.open_at:
        acc.open = price
        acc.open_at = ts


def _ratio(dominant: float, opposite: float) -> float:
    # An empty opposite side is flagged only under zero_policy="count": an unbounded ratio.
    return dominant / opposite if opposite > 0 else math.inf


def _merge(c: BarAcc, m: BarAcc) -> None:
    """Append closed bar ``m`` (later in time) to composed bar ``c``."""
    if m.has_price:
        if c.has_price:
            c.high = max(c.high, m.high)
            c.low = min(c.low, m.low)
        else:
            c.open, c.high, c.low = m.open, m.high, m.low
            c.has_price = True
        c.close = m.close
    if m.trades:
        if c.trades:
            c.delta_min = min(c.delta_min, c.run_delta + m.delta_min)
            c.delta_max = max(c.delta_max, c.run_delta + m.delta_max)
        else:
            c.delta_min, c.delta_max = m.delta_min, m.delta_max
        c.run_delta += m.run_delta
    c.volume += m.volume
    c.buy += m.buy
    c.sell += m.sell
    c.trades += m.trades
    c.pv += m.pv
    c.tick_count += m.tick_count
    c.gap = c.gap or m.gap
    c.big.extend(m.big)
    rows = c.rows
    for k, cell in m.rows.items():
        mine = rows.get(k)
        if mine is None:
            rows[k] = list(cell)
        else:
            mine[_BID] += cell[_BID]
            mine[_ASK] += cell[_ASK]
            mine[_N] += cell[_N]
