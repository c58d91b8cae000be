"""One alert to send: its type, the message that caused it and the context read around it.

The context is what the text and the chart need beyond the message itself (bars, bias, patterns).
"""

from __future__ import annotations

import msgspec

from ofcommon.messages import Bar, Bias, PatternSignal, TradeEvent


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What was on the instrument's streams at the alert's event time (none of it later).

    ``bars``: the last closed 1-minute bars, oldest first; ``bias``: the frame in force;
    ``patterns``: the pattern signals the event names, by id; ``history``: the trade's earlier
    events, oldest first (the entry gives the initial stop, hence the risk)."""

    tick_size: float
    bars: tuple[Bar, ...] = ()
    bias: Bias | None = None
    patterns: dict[str, PatternSignal] = msgspec.field(default_factory=dict)
    history: tuple[TradeEvent, ...] = ()


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    symbol: str
    key: str  # what it is deduplicated on (kinds.event_key)
    msg: TradeEvent | Bias
    context: Context
