"""What an alert's chart shows: its bars and price lines (value area, entry, SL, TP), pure.

``chart.render`` draws them; this module only decides which lines an alert type gets.
"""

from __future__ import annotations

from typing import Final

from of_alerts import texts
from of_alerts.alert import Alert
from of_alerts.chart import Line, render
from ofcommon.messages import Bias, Direction, TradeEvent

_VA: Final = "#7e57c2"
_POC: Final = "#ff9800"
_ENTRY: Final = "#1e88e5"
_SL: Final = "#e53935"
_TP: Final = "#43a047"
_LEVEL: Final = "#9e9e9e"
_TITLES: Final = {
    "entry": "ENTRY",
    "breakeven": "BREAK EVEN",
    "trail": "TRAIL UPDATE",
    "exit": "EXIT",
    "exit_warning": "EXIT WARNING",
    "bias": "DAILY BIAS",
}


def _value_area(b: Bias, tick: float, *, essential: bool = True) -> list[Line]:
    if not (b.vah or b.val or b.poc):
        return []
    return [
        Line(b.vah, f"VAH {texts.price(b.vah, tick)}", _VA, "--", essential),
        Line(b.poc, f"POC {texts.price(b.poc, tick)}", _POC, "-", essential),
        Line(b.val, f"VAL {texts.price(b.val, tick)}", _VA, "--", essential),
    ]


def _trade_lines(ev: TradeEvent, tick: float) -> list[Line]:
    entry = ev.price if ev.kind == "entry" else ev.entry_price
    out = []
    if entry:
        out.append(Line(entry, f"Entry {texts.price(entry, tick)}", _ENTRY, "-"))
    if ev.stop:
        out.append(Line(ev.stop, f"SL {texts.price(ev.stop, tick)}", _SL, "-"))
    if ev.target:
        out.append(Line(ev.target, f"TP {texts.price(ev.target, tick)}", _TP, "-"))
    if ev.kind == "exit":
        out.append(Line(ev.price, f"Exit {texts.price(ev.price, tick)}", "#000000", ":"))
    return out


def lines(alert: Alert) -> list[Line]:
    tick = alert.context.tick_size
    msg = alert.msg
    if isinstance(msg, Bias):
        out = _value_area(msg, tick)
        for lv in msg.levels:
            if lv.qualified and lv.kind not in ("poc", "vah", "val"):
                out.append(
                    Line(lv.price, f"{lv.kind.upper()} {texts.price(lv.price, tick)}", _LEVEL, ":")
                )
        return out
    bias = alert.context.bias
    return (_value_area(bias, tick) if bias else []) + _trade_lines(msg, tick)


def title(alert: Alert) -> str:
    d = alert.msg.bias if isinstance(alert.msg, Bias) else alert.msg.direction
    side = {Direction.LONG: "LONG", Direction.SHORT: "SHORT"}.get(d, "NEUTRAL")
    name = _TITLES.get(alert.type, alert.type.upper())
    return f"{alert.symbol} · {name} · {side} · {texts.when(alert.msg.ts_event)[:16]} UTC"


def png(alert: Alert) -> bytes | None:
    """The chart of ``alert``, or None when there are no bars to draw."""
    bars = alert.context.bars
    if not bars:
        return None
    return render(bars, lines(alert), title(alert))
