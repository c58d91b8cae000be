"""Footprint analytics of a bar: diagonal and horizontal imbalances, stacked imbalances,
unfinished auctions and big trades, with the parameters and presets of landscape.md §2.4–§2.14.

Definitions (B = bid volume, sell aggressors; A = ask volume, buy aggressors; rows are the bar's
footprint rows of ``row_size``):

* Diagonal (default): buy imbalance at row p when A(p) / B(p−1) ≥ ratio, sell imbalance at p when
  B(p) / A(p+1) ≥ ratio. A comparison row outside the bar's row range does not exist (nothing
  could trade there), so the lowest row has no buy and the highest no sell imbalance. Rows inside
  the range without trades count as zero volume.
* Horizontal: A(p) against B(p) at the same row. The seed's rule (§6: horizontal, one-sided rows
  always count, no minimum) is the ``SEED`` preset.
* ``min_volume``: the dominant side must reach it. ``zero_policy``: with an opposite of zero,
  ``"skip"`` never flags (the default: a 1-lot one-sided row is no imbalance, seed bug §19.16),
  ``"count"`` flags when the dominant side is > 0 and ≥ ``min_volume``.
* Stacked: ≥ ``stacked_rows`` (3) consecutive rows with same-side imbalances; each maximal run
  is reported once as a zone [low, high].
* Unfinished auction: both sides traded (above the filters) at the bar's high row / low row.
* Big trades: a print ≥ a fixed size, or ≥ the rolling percentile of the last ``window`` sizes
  (recomputed every ``refresh`` trades to stay cheap; no signal until ``min_samples`` are seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from ofcommon.messages import Bar, FootprintRow, Side, SizeKind, StackedRun, Trade

__all__ = [
    "ATAS",
    "DEFAULT",
    "NINJATRADER",
    "PRESETS",
    "SEED",
    "TRADINGVIEW",
    "BigTradeParams",
    "BigTradeState",
    "BigTrades",
    "Imbalance",
    "ImbalanceParams",
    "StackedImbalance",
    "imbalances",
    "imbalances_at",
    "rows_unfinished",
    "stacked_imbalances",
    "unfinished_auction",
]

ZeroPolicy = Literal["skip", "count"]
Mode = Literal["diagonal", "horizontal"]


class ImbalanceParams(msgspec.Struct, frozen=True, kw_only=True):
    """``ratio`` = dominant / opposite ≥ ratio (3.0 = "300 %")."""

    ratio: float = 3.0
    min_volume: float = 0.0
    zero_policy: ZeroPolicy = "skip"
    mode: Mode = "diagonal"
    stacked_rows: int = 3


DEFAULT: Final = ImbalanceParams()
# The seed's rule order (ask/bid first, then bid/ask, one-sided rows always) is exactly horizontal
# mode with zeros counted and no minimum.
# ATAS "150 %" is read as 1.5x (landscape §2.4: its help pages disagree; 1.5x is the usual one).
ATAS: Final = ImbalanceParams(ratio=1.5)
NINJATRADER: Final = ImbalanceParams(ratio=1.5)
TRADINGVIEW: Final = ImbalanceParams(ratio=3.0)
SEED: Final = ImbalanceParams(ratio=3.0, zero_policy="count", mode="horizontal")
PRESETS: Final[dict[str, ImbalanceParams]] = {
    "default": DEFAULT,
    "atas": ATAS,
    "ninjatrader": NINJATRADER,
    "tradingview": TRADINGVIEW,
    "seed": SEED,
}


class Imbalance(msgspec.Struct, frozen=True, array_like=True, gc=False):
    price: float
    side: Side
    dominant: float
    opposite: float


# The wire type: the bar builder publishes these as they are.
StackedImbalance = StackedRun


def _index(rows: Sequence[FootprintRow], row_size: float) -> dict[int, FootprintRow]:
    # Row prices are on the row grid; rounding the quotient absorbs their float noise.
    return {round(r.price / row_size): r for r in rows}


def imbalances(
    rows: Sequence[FootprintRow], row_size: float, params: ImbalanceParams = DEFAULT
) -> list[Imbalance]:
    """Every imbalance of a footprint, by ascending price (buy before sell at one price)."""
    if not rows:
        return []
    by_idx = _index(rows, row_size)
    idx = sorted(by_idx)
    return imbalances_at(idx, [by_idx[k] for k in idx], params)


def imbalances_at(
    idx: Sequence[int], rows: Sequence[FootprintRow], params: ImbalanceParams = DEFAULT
) -> list[Imbalance]:
    """``imbalances`` of rows already indexed: ``rows[i]`` is row ``idx[i]``, ``idx`` strictly
    ascending (a bar's footprint as built: no rounding of prices back to rows)."""
    out: list[Imbalance] = []
    n = len(rows)
    ratio, floor = params.ratio, params.min_volume
    zeros = params.zero_policy == "count"
    # The flag (a partial bar runs this over every row): the dominant side > 0 and at least
    # ``min_volume``; then an empty opposite counts only under "count", else the ratio decides.
    if params.mode == "horizontal":
        for row in rows:
            ask, bid = row.ask_volume, row.bid_volume
            if ask > 0.0 and ask >= floor and (zeros if bid <= 0.0 else ask >= ratio * bid):
                out.append(Imbalance(row.price, Side.BUY, ask, bid))
            elif bid > 0.0 and bid >= floor and (zeros if ask <= 0.0 else bid >= ratio * ask):
                out.append(Imbalance(row.price, Side.SELL, bid, ask))
        return out
    last = n - 1
    for i in range(n):
        row = rows[i]
        k = idx[i]
        ask = row.ask_volume
        if i > 0 and ask > 0.0 and ask >= floor:
            opp = rows[i - 1].bid_volume if idx[i - 1] == k - 1 else 0.0
            if zeros if opp <= 0.0 else ask >= ratio * opp:
                out.append(Imbalance(row.price, Side.BUY, ask, opp))
        bid = row.bid_volume
        if i < last and bid > 0.0 and bid >= floor:
            opp = rows[i + 1].ask_volume if idx[i + 1] == k + 1 else 0.0
            if zeros if opp <= 0.0 else bid >= ratio * opp:
                out.append(Imbalance(row.price, Side.SELL, bid, opp))
    return out


def stacked_imbalances(
    found: Sequence[Imbalance], row_size: float, min_rows: int = 3
) -> list[StackedImbalance]:
    """Maximal runs of ≥ ``min_rows`` consecutive rows with same-side imbalances."""
    out: list[StackedImbalance] = []
    for side in (Side.BUY, Side.SELL):
        idx = sorted({round(i.price / row_size) for i in found if i.side is side})
        start = 0
        for j in range(1, len(idx) + 1):
            if j == len(idx) or idx[j] != idx[j - 1] + 1:
                n = j - start
                if n >= min_rows:
                    lo = next(i.price for i in found if round(i.price / row_size) == idx[start])
                    hi = next(i.price for i in found if round(i.price / row_size) == idx[j - 1])
                    out.append(StackedImbalance(side, lo, hi, n))
                start = j
    return out


def unfinished_auction(
    bar: Bar, ask_filter: float = 0.0, bid_filter: float = 0.0
) -> tuple[bool, bool]:
    """(high unfinished, low unfinished): both sides traded at the extreme row (ATAS filters:
    the side that made the extreme must exceed its filter, the other side must be > 0)."""
    return rows_unfinished(bar.footprint, ask_filter, bid_filter)


def rows_unfinished(
    fp: Sequence[FootprintRow],
    ask_filter: float = 0.0,
    bid_filter: float = 0.0,
    *,
    ascending: bool = False,
) -> tuple[bool, bool]:
    """``unfinished_auction`` of a footprint (rows in any order, or ``ascending`` by price)."""
    if not fp:
        return False, False
    if ascending:
        top, bottom = fp[-1], fp[0]
    else:
        top = max(fp, key=lambda r: r.price)
        bottom = min(fp, key=lambda r: r.price)
    high = top.ask_volume > ask_filter and top.bid_volume > 0.0
    low = bottom.bid_volume > bid_filter and bottom.ask_volume > 0.0
    return high, low


class BigTradeParams(msgspec.Struct, frozen=True, kw_only=True):
    """``fixed`` > 0 uses that size; otherwise the ``percentile`` of the rolling window."""

    fixed: float = 0.0
    percentile: float = 99.0
    window: int = 1000
    refresh: int = 100
    min_samples: int = 100


class BigTradeState(msgspec.Struct, gc=False):
    sizes: list[float] = msgspec.field(default_factory=list)  # the window (a ring once full)
    pos: int = 0  # next slot of the ring buffer once full
    threshold: float = math.inf
    # Sizes not yet in the window: they are moved in only when the threshold is recomputed, so a
    # trade costs one comparison and one append (the fold's hot path).
    pending: list[float] = msgspec.field(default_factory=list)
    due: int = 0  # len(pending) at which the window is updated (0: not planned yet)


class BigTrades:
    """Flags big prints; pure over ``BigTradeState``."""

    __slots__ = ("_fixed", "params")

    def __init__(self, params: BigTradeParams | None = None) -> None:
        self.params = params or BigTradeParams()
        self._fixed = self.params.fixed

    def threshold(self, state: BigTradeState) -> float:
        return self._fixed if self._fixed > 0 else state.threshold

    def on_trade(self, state: BigTradeState, trade: Trade) -> bool:
        """Whether ``trade`` is big; the threshold is the one before this trade."""
        if trade.size_kind is not SizeKind.REAL:
            return False
        size = trade.size
        if self._fixed > 0:
            return size >= self._fixed
        big = size >= state.threshold
        pending = state.pending
        pending.append(size)
        if len(pending) >= state.due:
            self._update(state)
        return big

    def _update(self, state: BigTradeState) -> None:
        """Move the pending sizes into the window; recompute the threshold once ``min_samples``
        sizes are in, then every ``refresh`` trades."""
        p = self.params
        sizes = state.sizes
        # Fill the window, then overwrite the ring from ``pos`` in slices (wrapping at the end).
        rest = state.pending[max(0, p.window - len(sizes)) :]
        sizes.extend(state.pending[: len(state.pending) - len(rest)])
        while rest:
            n = min(len(rest), p.window - state.pos)
            sizes[state.pos : state.pos + n] = rest[:n]
            state.pos = (state.pos + n) % p.window
            rest = rest[n:]
        state.pending.clear()
        missing = p.min_samples - len(sizes)
        if missing <= 0:
            state.threshold = _percentile(sizes, p.percentile)
            state.due = p.refresh
        else:
            # A window smaller than min_samples never yields a threshold: just keep it moving.
            state.due = missing if len(sizes) < p.window else p.refresh


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: the threshold is a size that was traded)."""
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    # A sort in C beats heapq's Python-level selection on a window of a thousand sizes.
    return sorted(values)[rank - 1]
