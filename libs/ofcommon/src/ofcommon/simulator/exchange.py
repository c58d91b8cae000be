"""The simulated venue of one instrument: turns book and tape actions into wire messages.

Owns the book, the sequence numbers, trade ids, heartbeats and a small bar memory episodes consult.
"""

from __future__ import annotations

from collections import deque
from random import Random
from typing import Final, TypeAlias

from ofcommon import keys
from ofcommon.messages import (
    BookDelta,
    BookSnapshot,
    Heartbeat,
    Level,
    Side,
    SideSource,
    Trade,
)
from ofcommon.simulator.book import BUY, Book
from ofcommon.simulator.labels import Label
from ofcommon.simulator.profiles import SimProfile
from ofcommon.venue import Published

__all__ = ["BUY", "SELL", "Exchange", "Item", "Output"]

SELL: Final = -1
MINUTE_NS: Final = 60_000_000_000
SOURCE: Final = "sim"

Item: TypeAlias = Published | Label
# A NamedTuple's constructor is a Python-level call; building the tuple directly is several times
# cheaper on the hottest line of the simulator.
_new_tuple = tuple.__new__
Output: TypeAlias = tuple[int, Item]  # (event time, item): what the generator merges on


class Exchange:
    """Every emitted message is appended to ``out`` in event-time order.

    ``seq`` is the book's update id: 1 for the first snapshot, +1 per book message. A trade carries
    the ``seq`` of the book state it executed against (a cross-sequence, as Bybit's ``seq``); the
    book message that follows it shows the consumption.
    """

    def __init__(
        self, profile: SimProfile, rng: Random, *, start_ns: int, depth: int, heartbeat_ns: int
    ) -> None:
        self.profile = profile
        self.symbol = profile.symbol
        self.book = Book(rng, profile.base_ticks, depth, profile.level_lots)
        self.out: list[Output] = []
        self.now = start_ns
        self.seq = 0
        self.trades = 0
        self._labels = 0
        self._heartbeat_ns = heartbeat_ns
        # Heartbeats fall on whole multiples of the interval: identical across runs and resumes.
        self._next_heartbeat = -(-start_ns // heartbeat_ns) * heartbeat_ns if heartbeat_ns else 0
        self._latency = profile.latency_ns
        self._tick = profile.tick_size
        self._price_decimals = profile.price_decimals
        self._lot = profile.lot
        self._size_decimals = profile.size_decimals
        self._prices: dict[int, float] = {}
        self._sizes: dict[int, float] = {}
        self._trades_key = keys.stream(self.symbol, "trades")
        self._book_key = keys.stream(self.symbol, "book")
        # One-minute bars of our own prints: (minute, high tick, low tick, lots, delta lots).
        self.bars: deque[list[int]] = deque(maxlen=32)

    # --- units ----------------------------------------------------------------------------

    def price(self, tick: int) -> float:
        p = self._prices.get(tick)
        if p is None:
            p = self._prices[tick] = round(tick * self._tick, self._price_decimals)
        return p

    def size(self, lots: int) -> float:
        s = self._sizes.get(lots)
        if s is None:
            s = round(lots * self._lot, self._size_decimals)
            if len(self._sizes) < 100_000:
                self._sizes[lots] = s
        return s

    # --- time -----------------------------------------------------------------------------

    def advance(self, ts: int) -> None:
        """Move event time to ``ts``, emitting the heartbeats due on the way."""
        if ts < self.now:
            raise AssertionError(f"{self.symbol}: event time went back from {self.now} to {ts}")
        if self._heartbeat_ns:
            while self._next_heartbeat <= ts:
                hb_ts = self._next_heartbeat
                msg = Heartbeat(hb_ts, hb_ts + self._latency, SOURCE)
                self.out.append((hb_ts, Published(self.symbol, "trades", msg)))
                self.out.append((hb_ts, Published(self.symbol, "book", msg)))
                self._next_heartbeat += self._heartbeat_ns
        self.now = ts

    # --- book ------------------------------------------------------------------------------

    def snapshot(self) -> None:
        book = self.book
        book.changed_bids.clear()
        book.changed_asks.clear()
        self.seq += 1
        bids: list[Level] = [(self.price(t), self.size(n)) for t, n in book.levels(BUY)]
        asks: list[Level] = [(self.price(t), self.size(n)) for t, n in book.levels(SELL)]
        ts = self.now
        msg = BookSnapshot(ts, ts + self._latency, self.seq, bids, asks, book.depth)
        self.out.append((ts, _new_tuple(Published, (self.symbol, "book", msg))))

    def flush(self) -> None:
        """Publish the book changes recorded since the last book message as one delta."""
        book = self.book
        cb = book.changed_bids
        ca = book.changed_asks
        if not cb and not ca:
            return
        # Hot path: prices and sizes come from the caches (a price is never 0.0, a size of at
        # least one lot neither, so a miss is the only falsy lookup).
        pget = self._prices.get
        sget = self._sizes.get
        price = self.price
        size = self.size
        bids: list[Level] = []
        asks: list[Level] = []
        if cb:
            for t in sorted(cb, reverse=True) if len(cb) > 1 else cb:
                n = cb[t]
                bids.append((pget(t) or price(t), (sget(n) or size(n)) if n else 0.0))
            cb.clear()
        if ca:
            for t in sorted(ca) if len(ca) > 1 else ca:
                n = ca[t]
                asks.append((pget(t) or price(t), (sget(n) or size(n)) if n else 0.0))
            ca.clear()
        self.seq += 1
        ts = self.now
        msg = BookDelta(ts, ts + self._latency, self.seq, bids, asks)
        self.out.append((ts, _new_tuple(Published, (self.symbol, "book", msg))))

    # --- tape ------------------------------------------------------------------------------

    def market(self, side: int, lots: int) -> list[tuple[int, int]]:
        """A market order at ``now``: one print per level it fills, then the book delta."""
        fills = self.book.take(side, lots)
        ts = self.now
        recv = ts + self._latency
        aggressor = Side.BUY if side == BUY else Side.SELL
        symbol = self.symbol
        append = self.out.append
        n = self.trades
        filled = 0
        for tick, q in fills:
            n += 1
            filled += q
            msg = Trade(
                ts,
                recv,
                self.price(tick),
                self.size(q),
                aggressor,
                f"sim-{n}",
                SideSource.EXCHANGE,
                self.seq,
            )
            append((ts, _new_tuple(Published, (symbol, "trades", msg))))
        self.trades = n
        first, last = fills[0][0], fills[-1][0]
        hi, lo = (last, first) if last > first else (first, last)
        self._record_bar(ts, hi, lo, filled, filled * side)
        self.flush()
        return fills

    def _record_bar(self, ts: int, hi: int, lo: int, lots: int, delta: int) -> None:
        minute = ts // MINUTE_NS
        bars = self.bars
        if bars and bars[-1][0] == minute:
            bar = bars[-1]
            if hi > bar[1]:
                bar[1] = hi
            if lo < bar[2]:
                bar[2] = lo
            bar[3] += lots
            bar[4] += delta
        else:
            bars.append([minute, hi, lo, lots, delta])

    def label(self, label: Label) -> None:
        self.out.append((self.now, label))

    def next_label_id(self, pattern: str) -> str:
        self._labels += 1
        return f"{self.symbol}-{self._labels}-{pattern}"

    # --- bar memory, for episodes that must make a new extreme ------------------------------

    def recent(self, before_ns: int, count: int) -> list[list[int]]:
        """The bars of the ``count`` whole minutes before ``before_ns`` that had prints."""
        last = before_ns // MINUTE_NS
        return [b for b in self.bars if last - count <= b[0] < last]

    def recent_high(self, before_ns: int, count: int) -> int:
        bars = self.recent(before_ns, count)
        return max([b[1] for b in bars], default=self.book.ask)

    def recent_low(self, before_ns: int, count: int) -> int:
        bars = self.recent(before_ns, count)
        return min([b[2] for b in bars], default=self.book.bid)

    def recent_volume(self, before_ns: int, count: int) -> float:
        """Mean lots per bar over the ``count`` minutes before ``before_ns`` (empty minutes = 0)."""
        return sum(b[3] for b in self.recent(before_ns, count)) / count
