"""The WebSocket channels and which stream message feeds which, critical or conflated: pure.

Critical (never dropped): closed candles, signals, trade events and status, bias, final profiles.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from of_api import views
from ofcommon.messages import (
    Bar,
    Bias,
    BookStats,
    Message,
    PatternSignal,
    ProfileUpdate,
    StrategyStatus,
    Trade,
    TradeEvent,
)

CHANNELS: Final[tuple[str, ...]] = (
    "tick",
    "candle",
    "signal",
    "trade_state",
    "volume_profile",
    "bias",
    "orderbook",
    "delta",
    "stats",
)
# The streams the hub follows for each instrument.
KINDS: Final[tuple[str, ...]] = (
    "trades",
    "book",
    "bars",
    "profile",
    "bookstats",
    "patterns",
    "bias",
    "tradeevents",
    "status",
)


class Routed(NamedTuple):
    channel: str
    sub: str  # conflation sub-key (timeframe, scope) or ""
    critical: bool
    data: dict[str, Any]


def _tagged(msg: Message) -> dict[str, Any]:
    view = views.plain(msg)
    view["type"] = view.pop("k", "")
    return view


def route(msg: Message) -> list[Routed]:
    """The channel messages one stream message becomes."""
    if isinstance(msg, Trade):
        return [Routed("tick", "", False, views.tick(msg))]
    if isinstance(msg, Bar):
        out = [Routed("candle", msg.timeframe, msg.final, views.candle(msg))]
        if msg.timeframe == "1m":
            point = views.delta_point(msg, msg.cvd)
            out.append(Routed("delta", "", False, point))
        return out
    if isinstance(msg, ProfileUpdate):
        view = _tagged(msg)
        return [Routed("volume_profile", msg.scope, msg.final, view)]
    if isinstance(msg, BookStats):
        return [Routed("orderbook", "", False, views.book_stats(msg))]
    if isinstance(msg, PatternSignal):
        return [Routed("signal", "", True, _tagged(msg))]
    if isinstance(msg, TradeEvent | StrategyStatus):
        return [Routed("trade_state", "", True, _tagged(msg))]
    if isinstance(msg, Bias):
        return [Routed("bias", "", True, _tagged(msg))]
    return []
