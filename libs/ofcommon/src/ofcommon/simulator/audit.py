"""A consistency audit of one instrument's trades and book messages, replayed in stream order.

What every simulated run must satisfy (tests) and what a recorded or replayed feed can be held to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from ofcommon.messages import BookDelta, BookSnapshot, Heartbeat, Message, Side, SideSource, Trade
from ofcommon.simulator.exchange import Item
from ofcommon.simulator.labels import Label

__all__ = ["Audit", "AuditError", "audit"]

_GRID_TOLERANCE: Final = 1e-6  # in ticks: far below one tick, far above float noise


class AuditError(AssertionError):
    """A message that breaks an invariant; the message names the instrument, stream and rule."""


class Audit:
    """Replays one instrument's ``trades`` and ``book`` messages and checks, after each one:

    * event time never goes back on a stream and ``ts_recv >= ts_event``;
    * the book starts with a snapshot, ``seq`` is contiguous, a delta deletes only levels that
      exist, and the book is never crossed (best bid < best ask) nor holds a size <= 0;
    * every price is on the tick grid and every size is positive;
    * a trade carries the ``seq`` of the book it executed against and executes there: a buy at
      an ask level, having consumed every lower ask first (a walk through the book), never more
      than the level shows; the book message that follows shows exactly that consumption.
    """

    def __init__(self, symbol: str, tick_size: float, *, depth: int | None = None) -> None:
        self.symbol = symbol
        self.tick = tick_size
        self.depth = depth
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.seq = 0
        self.last_ts: dict[str, int] = {"trades": 0, "book": 0}
        self.trade_ids: set[str] = set()
        self.trades = 0
        self.book_messages = 0
        self._fills: dict[float, float] = {}  # price -> size traded against the current book
        self._fill_side = 0
        self._fill_before: dict[float, float] = {}

    def fail(self, kind: str, msg: Message, rule: str) -> AuditError:
        return AuditError(f"{self.symbol} {kind}: {rule}: {msg!r}")

    def on_grid(self, price: float) -> bool:
        ticks = price / self.tick
        return abs(ticks - round(ticks)) < _GRID_TOLERANCE

    def feed(self, kind: str, msg: Message) -> None:
        ts = getattr(msg, "ts_event", None)
        if isinstance(ts, int):
            if ts < self.last_ts.get(kind, 0):
                raise self.fail(kind, msg, f"event time went back from {self.last_ts[kind]}")
            self.last_ts[kind] = ts
            recv = getattr(msg, "ts_recv", ts)
            if recv < ts:
                raise self.fail(kind, msg, "ts_recv before ts_event")
        if isinstance(msg, Heartbeat):
            return
        if kind == "trades" and isinstance(msg, Trade):
            self._trade(msg)
        elif kind == "book" and isinstance(msg, BookSnapshot | BookDelta):
            self._book(msg)
        else:
            raise self.fail(kind, msg, "message type not expected on this stream")

    # --- trades -----------------------------------------------------------------------------

    def _trade(self, t: Trade) -> None:
        if not self.on_grid(t.price):
            raise self.fail("trades", t, "price off the tick grid")
        if not t.size > 0:
            raise self.fail("trades", t, "size not positive")
        if t.side not in (Side.BUY, Side.SELL) or t.side_source != SideSource.EXCHANGE:
            raise self.fail("trades", t, "aggressor side missing or estimated")
        if t.trade_id in self.trade_ids:
            raise self.fail("trades", t, "trade_id repeats")
        self.trade_ids.add(t.trade_id)
        self.trades += 1
        if t.seq != self.seq:
            raise self.fail("trades", t, f"seq {t.seq} is not the book's {self.seq}")
        if self._fills and t.side != self._fill_side:
            raise self.fail("trades", t, "both sides traded against one book state")
        self._fill_side = t.side
        ladder = self.asks if t.side == Side.BUY else self.bids
        if t.price not in ladder:
            raise self.fail("trades", t, "no resting level at the trade price")
        # Every better level must already be used up by this walk.
        for price, size in ladder.items():
            better = price < t.price if t.side == Side.BUY else price > t.price
            if better and not math.isclose(self._fills.get(price, 0.0), size, abs_tol=1e-9):
                raise self.fail("trades", t, f"traded through {price}, which still rests")
        filled = self._fills.get(t.price, 0.0) + t.size
        if filled > ladder[t.price] + 1e-9:
            raise self.fail("trades", t, f"{filled} traded, only {ladder[t.price]} rested")
        self._fills[t.price] = filled
        self._fill_before.setdefault(t.price, ladder[t.price])

    # --- book -------------------------------------------------------------------------------

    def _book(self, m: BookSnapshot | BookDelta) -> None:
        self.book_messages += 1
        if isinstance(m, BookSnapshot):
            if self.seq and m.seq <= self.seq:
                raise self.fail("book", m, f"snapshot seq {m.seq} not after {self.seq}")
            self.bids = {}
            self.asks = {}
            self._fills.clear()
            self._fill_before.clear()
        elif not self.seq:
            raise self.fail("book", m, "delta before the first snapshot")
        elif m.seq != self.seq + 1:
            raise self.fail("book", m, f"seq {m.seq} does not follow {self.seq}")
        self.seq = m.seq
        self._apply(m)
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            raise self.fail("book", m, f"crossed: bid {max(self.bids)} >= ask {min(self.asks)}")
        if self.depth is not None and (len(self.bids), len(self.asks)) != (self.depth,) * 2:
            raise self.fail(
                "book", m, f"{len(self.bids)}/{len(self.asks)} levels, not {self.depth}"
            )
        if self._fills:
            self._check_consumption(m)

    def _apply(self, m: BookSnapshot | BookDelta) -> None:
        for levels, side in ((m.bids, self.bids), (m.asks, self.asks)):
            for price, size in levels:
                if not self.on_grid(price):
                    raise self.fail("book", m, f"level {price} off the tick grid")
                if size < 0 or (size == 0 and isinstance(m, BookSnapshot)):
                    raise self.fail("book", m, f"size {size} at {price}")
                if size == 0:
                    if side.pop(price, None) is None:
                        raise self.fail("book", m, f"deletes {price}, which does not rest")
                else:
                    side[price] = size
        # Keep ladders ordered best first: the walk check iterates them.
        self.bids = dict(sorted(self.bids.items(), reverse=True))
        self.asks = dict(sorted(self.asks.items()))

    def _check_consumption(self, m: BookSnapshot | BookDelta) -> None:
        ladder = self.asks if self._fill_side == Side.BUY else self.bids
        for price, traded in self._fills.items():
            left = self._fill_before[price] - traded
            shown = ladder.get(price, 0.0)
            if not math.isclose(shown, left, abs_tol=1e-6):
                raise self.fail("book", m, f"{price} shows {shown} after trades, not {left}")
        self._fills.clear()
        self._fill_before.clear()


def audit(
    items: Iterable[Item], tick_sizes: dict[str, float], *, depth: int | None = None
) -> dict[str, Audit]:
    """Audit every instrument of a run (labels are skipped); raises ``AuditError`` at the first
    broken invariant, else returns each instrument's audit with its counters."""
    audits: dict[str, Audit] = {}
    for item in items:
        if isinstance(item, Label):
            continue
        a = audits.get(item.symbol)
        if a is None:
            a = audits[item.symbol] = Audit(item.symbol, tick_sizes[item.symbol], depth=depth)
        a.feed(item.kind, item.msg)
    return audits
