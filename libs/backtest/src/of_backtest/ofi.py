"""Pipeline sanity (landscape.md §4 A1–A2): best-level order-flow imbalance, trade imbalance and
mid-price change per time bucket, from the raw book and trades, apart from analytics' own code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ofcommon.messages import BookDelta, BookSnapshot, Gap, Message, Quote, Side, Trade


@dataclass
class Bucket:
    """One bucket of event time: summed OFI and signed trade volume, mid at its start and end."""

    start: int
    ofi: float = 0.0
    trade_imbalance: float = 0.0
    mid_open: float = 0.0
    mid_close: float = 0.0


@dataclass
class Top:
    """The best bid and ask (price, size) of one book, kept from snapshots and deltas."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    bid: tuple[float, float] | None = None
    ask: tuple[float, float] | None = None

    def replace(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        self.bids = {p: s for p, s in bids if s > 0}
        self.asks = {p: s for p, s in asks if s > 0}
        self._best()

    def apply(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        for book, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if s > 0:
                    book[p] = s
                else:
                    book.pop(p, None)
        self._best()

    def _best(self) -> None:
        if self.bids:
            p = max(self.bids)
            self.bid = (p, self.bids[p])
        else:
            self.bid = None
        if self.asks:
            p = min(self.asks)
            self.ask = (p, self.asks[p])
        else:
            self.ask = None


def ofi_step(
    prev: tuple[tuple[float, float], tuple[float, float]],
    now: tuple[tuple[float, float], tuple[float, float]],
) -> float:
    """Cont, Kukanov & Stoikov (2014) e_n for one best-level change ((bid, size), (ask, size))."""
    (pb0, qb0), (pa0, qa0) = prev
    (pb, qb), (pa, qa) = now
    e = 0.0
    if pb >= pb0:
        e += qb
    if pb <= pb0:
        e -= qb0
    if pa <= pa0:
        e -= qa
    if pa >= pa0:
        e += qa0
    return e


class Regression:
    """Running co-moments of (x, y) pairs (Welford): R² of y on x in constant memory."""

    __slots__ = ("cxx", "cxy", "cyy", "mx", "my", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mx = self.my = self.cxx = self.cyy = self.cxy = 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        dx = x - self.mx
        self.mx += dx / self.n
        dy = y - self.my
        self.my += dy / self.n
        self.cxx += dx * (x - self.mx)
        self.cyy += dy * (y - self.my)
        self.cxy += dx * (y - self.my)

    def r2(self) -> float | None:
        """None when fewer than three points or either side is constant (as ``r_squared``)."""
        if self.n < 3 or self.cxx <= 0 or self.cyy <= 0:
            return None
        return self.cxy * self.cxy / (self.cxx * self.cyy)


class OfiTap:
    """Buckets of ``width_ns`` for one instrument (the book and trade messages it is shown),
    folded into the two regressions as each closes: constant memory over any run."""

    def __init__(self, width_ns: int) -> None:
        self.width = width_ns
        self.bucket: Bucket | None = None
        self.on_ofi = Regression()
        self.on_trades = Regression()
        self._top = Top()
        self._last: tuple[tuple[float, float], tuple[float, float]] | None = None

    def _close(self, b: Bucket) -> None:
        if b.mid_open > 0 and b.mid_close > 0:
            dmid = b.mid_close - b.mid_open
            self.on_ofi.add(b.ofi, dmid)
            self.on_trades.add(b.trade_imbalance, dmid)

    def _bucket(self, ts: int) -> Bucket:
        start = ts - ts % self.width
        b = self.bucket
        if b is None or b.start != start:
            if b is not None:
                self._close(b)
            mid = 0.0
            if self._last is not None:
                mid = (self._last[0][0] + self._last[1][0]) / 2
            b = self.bucket = Bucket(start, mid_open=mid, mid_close=mid)
        return b

    def sanity(self) -> dict[str, float | int | None]:
        """R² of the mid change on OFI and on trade imbalance over the buckets with a book (the
        open bucket included)."""
        ofi, trades = self.on_ofi, self.on_trades
        if self.bucket is not None:  # on copies: the tap may go on
            ofi, trades = _copy(ofi), _copy(trades)
            b = self.bucket
            if b.mid_open > 0 and b.mid_close > 0:
                ofi.add(b.ofi, b.mid_close - b.mid_open)
                trades.add(b.trade_imbalance, b.mid_close - b.mid_open)
        return {"buckets": ofi.n, "r2_ofi": ofi.r2(), "r2_trade_imbalance": trades.r2()}

    def on(self, msg: Message) -> None:
        if isinstance(msg, Trade):
            b = self._bucket(msg.ts_event)
            b.trade_imbalance += msg.size if msg.side == Side.BUY else -msg.size
            return
        if isinstance(msg, BookSnapshot):
            self._top.replace(msg.bids, msg.asks)
        elif isinstance(msg, BookDelta):
            self._top.apply(msg.bids, msg.asks)
        elif isinstance(msg, Quote):
            self._top.bid, self._top.ask = (msg.bid, msg.bid_size), (msg.ask, msg.ask_size)
        elif isinstance(msg, Gap) and msg.stream == "book":
            self._top = Top()
            self._last = None
            return
        else:
            return
        top = self._top
        if top.bid is None or top.ask is None or top.bid[0] >= top.ask[0]:
            return
        now = (top.bid, top.ask)
        b = self._bucket(msg.ts_event)
        if self._last is not None:
            b.ofi += ofi_step(self._last, now)
        else:
            b.mid_open = (now[0][0] + now[1][0]) / 2
        self._last = now
        b.mid_close = (now[0][0] + now[1][0]) / 2


def r_squared(x: list[float], y: list[float]) -> float | None:
    """R² of the least-squares line of ``y`` on ``x`` (the squared correlation); None when
    fewer than three points or either side is constant."""
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return sxy * sxy / (sxx * syy)


def _copy(r: Regression) -> Regression:
    c = Regression()
    c.n, c.mx, c.my, c.cxx, c.cyy, c.cxy = r.n, r.mx, r.my, r.cxx, r.cyy, r.cxy
    return c
