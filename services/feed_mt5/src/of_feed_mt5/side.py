"""Aggressor side of MT5 ticks: the exchange's BUY/SELL flag, else an estimate (feeds.md §C.7).

Pure and stateful per instrument: the tick test remembers the last different price.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from of_feed_mt5.constants import TICK_FLAG_BUY, TICK_FLAG_SELL
from ofcommon.messages import Side, SideSource

SideRule: TypeAlias = Literal["lee_ready", "tick_rule"]
SIDE_RULES: Final[tuple[SideRule, ...]] = ("lee_ready", "tick_rule")
# The tick rule: 96.9 % on the real BTCUSDT trades against 49.2 % for Lee-Ready (docs/mt5.md)
DEFAULT_SIDE_RULE: Final[SideRule] = "tick_rule"

Classified: TypeAlias = tuple[Side, SideSource]


def flagged_side(flags: int) -> Side | None:
    """The side the venue gave: exactly one of BUY/SELL set. Both (common on exchange feeds, and
    some FX brokers set both on every tick) or neither means unknown."""
    buy = bool(flags & TICK_FLAG_BUY)
    sell = bool(flags & TICK_FLAG_SELL)
    if buy == sell:
        return None
    return Side.BUY if buy else Side.SELL


class TickTest:
    """Compare with the last *different* price: uptick or zero-uptick buys, downtick or
    zero-downtick sells; no direction until the price has moved once."""

    __slots__ = ("_direction", "_last")

    def __init__(self) -> None:
        self._last: float | None = None
        self._direction = 0

    def push(self, price: float) -> int:
        """The direction of ``price`` (+1, -1, or 0 = unknown yet); remembers it."""
        if self._last is not None:
            if price > self._last:
                self._direction = 1
            elif price < self._last:
                self._direction = -1
        self._last = price
        return self._direction


def _side(direction: int) -> Side:
    return Side.BUY if direction > 0 else Side.SELL


class TradeClassifier:
    """Side of trade ticks without a usable BUY/SELL flag.

    ``lee_ready``: compare the price with the mid of the quote in force *before* the trade (the
    previous tick's bid/ask: the trade tick's own quote may already be post-trade); at the mid,
    or without a quote, the tick test decides. ``tick_rule``: the tick test alone.
    """

    __slots__ = ("_rule", "_test")

    def __init__(self, rule: SideRule = DEFAULT_SIDE_RULE) -> None:
        if rule not in SIDE_RULES:
            raise ValueError(f"unknown side rule {rule!r} (expected one of {SIDE_RULES})")
        self._rule = rule
        self._test = TickTest()

    def classify(
        self, price: float, flags: int, prev_bid: float, prev_ask: float
    ) -> Classified | None:
        """(side, source) of one trade, or None when nothing can tell yet."""
        direction = self._test.push(price)  # every trade feeds the tick test, whoever decides
        given = flagged_side(flags)
        if given is not None:
            return given, SideSource.EXCHANGE
        if self._rule == "lee_ready" and 0 < prev_bid <= prev_ask:
            mid = (prev_bid + prev_ask) / 2
            if price > mid:
                return Side.BUY, SideSource.QUOTE_RULE
            if price < mid:
                return Side.SELL, SideSource.QUOTE_RULE
        if direction == 0:
            return None
        return _side(direction), SideSource.TICK_RULE


class QuotePressure:
    """Direction proxy for quote-only ticks (FX/CFD: no trades at all): the sign of the mid's
    change, carried through unchanged mids like the tick test. An estimate, never real volume."""

    __slots__ = ("_test",)

    def __init__(self) -> None:
        self._test = TickTest()

    def push(self, bid: float, ask: float) -> Classified | None:
        direction = self._test.push((bid + ask) / 2)
        if direction == 0:
            return None
        return _side(direction), SideSource.TICK_RULE
