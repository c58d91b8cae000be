"""Chart markers (TradingView shape) for pattern signals and trade events: pure.

A marker sits on the bar that opens at the decision time, never on the bar it was decided on.
"""

from __future__ import annotations

from typing import Any, Final

from ofcommon.messages import Direction, PatternSignal, TradeEvent

NS: Final = 1_000_000_000
_PATTERN_TEXT: Final = {
    "absorption": "ABS",
    "initiative": "INIT",
    "sweep": "SWEEP",
    "exhaustion": "EXHAUST",
    "divergence": "DIV",
}
_EVENT_TEXT: Final = {"breakeven": "BE", "trail": "TRAIL", "exit": "EXIT", "exit_warning": "WARN"}


def marker(item: PatternSignal | TradeEvent, period_s: int) -> dict[str, Any] | None:
    """The marker of ``item`` on bars of ``period_s`` seconds, or None (events without one)."""
    t = item.ts_event // NS
    time = t - t % period_s
    long = item.direction == Direction.LONG
    if isinstance(item, PatternSignal):
        text = _PATTERN_TEXT[item.pattern]
        color = "#26a69a" if long else "#ef5350"
        shape = "circle"
    elif item.kind == "entry":
        text = "ENTRY ▲" if long else "ENTRY ▼"
        color = "#2962ff"
        shape = "arrowUp" if long else "arrowDown"
    elif item.kind in _EVENT_TEXT:
        text = _EVENT_TEXT[item.kind]
        color = "#ff9800"
        shape = "square"
    else:
        return None
    return {
        "time": time,
        "ts_event": item.ts_event,
        "position": "belowBar" if long else "aboveBar",
        "color": color,
        "shape": shape,
        "text": text,
        "price": item.price,
    }
