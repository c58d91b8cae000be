"""Our own L2 order book for Bybit v5: absolute-size levels in two dicts, sorted only on demand,
and the strict parser that turns Bybit's decimal strings into exact price and size keys.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from typing import Final, Literal, NamedTuple, TypeAlias

from ofcommon.messages import Level

BookSide: TypeAlias = Literal["bid", "ask"]

MAX_SIGNIFICANT_DIGITS: Final = 15
_MAX_TEXT: Final = 40  # far longer than any venue price; keeps exponents in the normal range
_DECIMAL: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")  # not \d: that also matches non-ASCII


def parse_decimal(text: str) -> float:
    """The exact float of a plain decimal string; ``ValueError`` for anything else.

    Exactness: a price or size is accepted only as a plain decimal (``123.4500``: digits, at most
    one dot, no sign or exponent) with at most 15 significant digits, and only then converted with
    ``float()``. IEEE doubles carry 15 significant decimal digits losslessly (``DBL_DIG``), so on
    that domain the conversion is injective and order-preserving: ``"0.5011"`` and ``"0.50110"`` hit
    the same key, two different prices never collide, and comparing the floats orders the prices
    exactly as the decimals. The keys never go through arithmetic, so they stay exact; the wire
    messages need floats anyway (docs/streams.md), so no Decimal → float step is repeated on output.
    """
    # Fast path (the hot loop of every book delta): a string of at most 15 characters holds at
    # most 15 digits, so only its shape needs checking; isascii first, as str.isdigit also takes
    # non-ASCII digits. Anything else goes through the full check and its precise errors.
    if len(text) <= MAX_SIGNIFICANT_DIGITS and text.isascii():
        whole, dot, frac = text.partition(".")
        if whole.isdigit() and (frac.isdigit() or not dot):
            return float(text)
    m = _DECIMAL.fullmatch(text) if len(text) <= _MAX_TEXT else None
    if m is None:
        raise ValueError(f"{text!r} is not a plain decimal number")
    if len((m[1] + (m[2] or "")).strip("0")) > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(
            f"{text!r} has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
            " (it would not convert exactly)"
        )
    return float(text)


def parse_levels(raw: Iterable[Sequence[str]]) -> list[Level]:
    """``[[price, size], ...]`` strings → ``[(price, size)]``; price > 0, size >= 0.

    Raises ``ValueError`` naming the offending level's index.
    """
    out: list[Level] = []
    for k, pair in enumerate(raw):
        if len(pair) != 2:
            raise ValueError(f"[{k}]: expected [price, size], got {len(pair)} items")
        try:
            price = parse_decimal(pair[0])
            size = parse_decimal(pair[1])
        except ValueError as e:
            raise ValueError(f"[{k}]: {e}") from None
        if price <= 0.0:
            raise ValueError(f"[{k}]: price {pair[0]!r} is not positive")
        out.append((price, size))
    return out


class Changes(NamedTuple):
    """What a delta did: the final size of every touched level (0 = gone), best first."""

    bids: list[Level]
    asks: list[Level]
    absent_deletes: int  # deletes of levels the book did not hold (tolerated, counted)
    truncated: int  # levels pushed out of the depth window


class L2Book:
    """Price → size per side, at most ``depth`` levels each; the best levels win the window."""

    __slots__ = ("_asks", "_bids", "depth")

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}

    def clear(self) -> None:
        self._bids = {}
        self._asks = {}

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> int:
        """Load a snapshot; returns how many levels were truncated.

        A repeated price takes its last size and a zero size means no level, as in a delta.
        """
        self._bids = _nonzero(dict(bids))
        self._asks = _nonzero(dict(asks))
        return len(_trim(self._bids, self.depth, lowest=True)) + len(
            _trim(self._asks, self.depth, lowest=False)
        )

    def update(self, bids: Iterable[Level], asks: Iterable[Level]) -> Changes:
        """Apply a delta of absolute sizes (0 deletes), then re-impose the depth window.

        The window is applied once per message, not per level: a message is one book state.
        """
        bid_prices, absent_b = _apply(self._bids, bids)
        ask_prices, absent_a = _apply(self._asks, asks)
        cut_b = _trim(self._bids, self.depth, lowest=True)
        cut_a = _trim(self._asks, self.depth, lowest=False)
        bid_prices.update(cut_b)
        ask_prices.update(cut_a)
        return Changes(
            bids=sorted(((p, self._bids.get(p, 0.0)) for p in bid_prices), reverse=True),
            asks=sorted((p, self._asks.get(p, 0.0)) for p in ask_prices),
            absent_deletes=absent_b + absent_a,
            truncated=len(cut_b) + len(cut_a),
        )

    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        price = max(self._bids)
        return price, self._bids[price]

    def best_ask(self) -> Level | None:
        if not self._asks:
            return None
        price = min(self._asks)
        return price, self._asks[price]

    def crossed(self) -> bool:
        """Best bid at or above best ask: the book has missed an update (never valid on Bybit)."""
        return bool(self._bids and self._asks) and max(self._bids) >= min(self._asks)

    def levels(self, side: BookSide, n: int | None = None) -> list[Level]:
        """Up to ``n`` (default all) levels of one side, best first."""
        book = self._bids if side == "bid" else self._asks
        if n is not None and n < len(book):
            # Prices are unique, so tuples compare on price alone.
            pick = heapq.nlargest if side == "bid" else heapq.nsmallest
            return pick(n, book.items())
        return sorted(book.items(), reverse=side == "bid")

    def count(self, side: BookSide) -> int:
        return len(self._bids if side == "bid" else self._asks)

    def __repr__(self) -> str:
        return (
            f"L2Book(depth={self.depth}, bids={len(self._bids)}, asks={len(self._asks)},"
            f" best={self.best_bid()}/{self.best_ask()})"
        )


def _nonzero(levels: dict[float, float]) -> dict[float, float]:
    return {price: size for price, size in levels.items() if size != 0.0}


def _apply(book: dict[float, float], updates: Iterable[Level]) -> tuple[set[float], int]:
    touched: set[float] = set()
    absent = 0
    for price, size in updates:
        touched.add(price)
        if size == 0.0:
            if book.pop(price, None) is None:
                absent += 1
        else:
            book[price] = size
    return touched, absent


def _trim(book: dict[float, float], depth: int, *, lowest: bool) -> list[float]:
    """Drop the worst levels beyond ``depth`` (lowest bids or highest asks); return their prices.

    Bybit itself keeps the window, so this is rare; a heap pick avoids sorting the whole side.
    """
    excess = len(book) - depth
    if excess <= 0:
        return []
    worst = heapq.nsmallest(excess, book) if lowest else heapq.nlargest(excess, book)
    for price in worst:
        del book[price]
    return worst
