"""The simulated L2 book: two dense ladders of resting lots on the tick grid, never crossed.

Pure integer state (ticks, lots); every change is recorded so the venue can publish it as a delta.
"""

from __future__ import annotations

from random import Random

__all__ = ["Book"]

BUY = 1
SELL = -1


class Book:
    """Each side holds exactly ``depth`` contiguous levels from its touch outwards.

    ``bids[i]`` rests at ``bid - i`` and ``asks[i]`` at ``ask + i``. A level that leaves the window
    (or is emptied) is recorded as deleted (0 lots) and a new level is drawn at the far end, so a
    consumer that applies every delta holds the very same ladder. ``bid < ask`` always.
    """

    __slots__ = (
        "_rng",
        "ask",
        "asks",
        "bid",
        "bids",
        "changed_asks",
        "changed_bids",
        "depth",
        "lots",
    )

    def __init__(self, rng: Random, mid_ticks: int, depth: int, level_lots: int) -> None:
        if depth < 5:
            raise ValueError("book depth must be at least 5 levels")
        self._rng = rng
        self.depth = depth
        self.lots = level_lots
        self.bid = mid_ticks
        self.ask = mid_ticks + 1
        self.bids = [self.far_size(i) for i in range(depth)]
        self.asks = [self.far_size(i) for i in range(depth)]
        self.changed_bids: dict[int, int] = {}
        self.changed_asks: dict[int, int] = {}

    def target(self, level: int) -> int:
        """Typical resting lots ``level`` steps from the touch (deeper levels are larger)."""
        return int(self.lots * (1.0 + 0.08 * level))

    def far_size(self, level: int) -> int:
        return max(1, int(self.target(level) * (0.7 + 0.6 * self._rng.random())))

    def spread(self) -> int:
        return self.ask - self.bid

    def touch_lots(self, side: int) -> int:
        """Resting lots at the touch an aggressor of ``side`` would hit."""
        return self.asks[0] if side == BUY else self.bids[0]

    def touch(self, side: int) -> int:
        """The tick an aggressor of ``side`` trades at first: the ask for a buy, else the bid."""
        return self.ask if side == BUY else self.bid

    def take(self, side: int, lots: int) -> list[tuple[int, int]]:
        """A market order of ``side``: fills (tick, lots) walking the opposite ladder.

        The walk stops one level short of emptying the window: the venue never runs dry.
        """
        fills: list[tuple[int, int]] = []
        if side == BUY:
            ladder, changed, step = self.asks, self.changed_asks, 1
        else:
            ladder, changed, step = self.bids, self.changed_bids, -1
        rest = lots
        while rest > 0 and len(fills) < self.depth - 1:
            top = ladder[0]
            tick = self.ask if side == BUY else self.bid
            if rest < top:
                ladder[0] = top - rest
                changed[tick] = top - rest
                fills.append((tick, rest))
                break
            fills.append((tick, top))
            rest -= top
            changed[tick] = 0
            del ladder[0]
            if side == BUY:
                self.ask += 1
            else:
                self.bid -= 1
            far = self.far_size(self.depth - 1)
            ladder.append(far)
            changed[tick + step * self.depth] = far
        return fills

    def set_level(self, side: int, level: int, lots: int) -> None:
        """Resting lots of a level already in the window (adds, cancels, refills); lots >= 1."""
        if side == BUY:
            self.bids[level] = lots
            self.changed_bids[self.bid - level] = lots
        else:
            self.asks[level] = lots
            self.changed_asks[self.ask + level] = lots

    def improve(self, side: int, lots: int) -> bool:
        """A new best level inside the spread on ``side`` (BUY = bids); False if the spread is 1."""
        if self.ask - self.bid <= 1:
            return False
        if side == BUY:
            self.changed_bids[self.bid - self.depth + 1] = 0
            del self.bids[-1]
            self.bid += 1
            self.bids.insert(0, lots)
            self.changed_bids[self.bid] = lots
        else:
            self.changed_asks[self.ask + self.depth - 1] = 0
            del self.asks[-1]
            self.ask -= 1
            self.asks.insert(0, lots)
            self.changed_asks[self.ask] = lots
        return True

    def pull(self, side: int) -> None:
        """The best level of ``side`` (BUY = bids) is cancelled whole; a far level joins in."""
        if side == BUY:
            self.changed_bids[self.bid] = 0
            del self.bids[0]
            self.bid -= 1
            far = self.far_size(self.depth - 1)
            self.bids.append(far)
            self.changed_bids[self.bid - self.depth + 1] = far
        else:
            self.changed_asks[self.ask] = 0
            del self.asks[0]
            self.ask += 1
            far = self.far_size(self.depth - 1)
            self.asks.append(far)
            self.changed_asks[self.ask + self.depth - 1] = far

    def shift(self, direction: int) -> None:
        """Market makers reprice by one tick: the touch facing the move is pulled, the other side
        steps up behind it. Both the bid and the ask move by exactly one tick."""
        if direction > 0:
            self.pull(SELL)
            if not self.improve(BUY, self.far_size(0)):
                raise AssertionError("book shift up left no room for the bid")
        else:
            self.pull(BUY)
            if not self.improve(SELL, self.far_size(0)):
                raise AssertionError("book shift down left no room for the ask")

    def recenter(self, bid: int) -> None:
        """A fresh ladder with its best bid at ``bid`` (a session reopening), all levels redrawn."""
        self.bid = bid
        self.ask = bid + 1
        self.bids = [self.far_size(i) for i in range(self.depth)]
        self.asks = [self.far_size(i) for i in range(self.depth)]
        self.changed_bids.clear()
        self.changed_asks.clear()

    def levels(self, side: int) -> list[tuple[int, int]]:
        """(tick, lots) of one side, best first (BUY = bids)."""
        if side == BUY:
            return [(self.bid - i, lots) for i, lots in enumerate(self.bids)]
        return [(self.ask + i, lots) for i, lots in enumerate(self.asks)]
