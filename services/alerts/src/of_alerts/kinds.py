"""The alert types (README "Telegram Alerts") and how stream messages map to them.

A ``TradeEvent`` kind names its type; a ``Bias`` on the bias stream is the daily bias alert.
"""

from __future__ import annotations

from typing import Final

from ofcommon.messages import Bias, Message, TradeEvent

# The README's six, then the trade machine's other transitions (off unless OF_ALERTS_TYPES asks).
DEFAULT_TYPES: Final = ("entry", "breakeven", "trail", "exit", "exit_warning", "bias")
ALERT_TYPES: Final = (*DEFAULT_TYPES, "watch", "cancel", "entry_rejected", "alert")
GRADES: Final = ("A+", "A", "B", "C")  # best first

HEADERS: Final = {
    "entry": "🎯 ENTRY SIGNAL",
    "breakeven": "🔒 BREAK EVEN",
    "trail": "📈 TRAIL UPDATE",
    "exit": "🚪 EXIT SIGNAL",
    "exit_warning": "⚠️ EXIT WARNING",
    "bias": "🧭 DAILY BIAS",
    "watch": "👀 WATCHING LEVEL",
    "cancel": "✖️ WATCH CANCELLED",
    "entry_rejected": "🚫 ENTRY REJECTED",
    "alert": "📊 ALERT",
}


def alert_type(msg: Message) -> str | None:
    """The alert type of a message read from tradeevents or bias; None: not an alert.

    A ``bias`` TradeEvent repeats the Bias entry (which has the levels), so only the latter counts.
    """
    if isinstance(msg, Bias):
        return "bias"
    if isinstance(msg, TradeEvent) and msg.kind != "bias":
        return msg.kind
    return None


def event_key(msg: TradeEvent | Bias) -> str:
    """The id an alert is deduplicated on: the event id, or ``bias-<session>`` for a bias."""
    if isinstance(msg, Bias):
        return f"bias-{msg.session_id}"
    return msg.event_id
