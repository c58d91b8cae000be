"""The text of each alert type (README "Telegram Alerts"), plain text, pure.

Prices keep the instrument's tick precision (the seed's two decimals lost FX pips, spec §17).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from of_alerts.alert import Alert, Context
from of_alerts.kinds import HEADERS
from ofcommon.messages import Bias, Direction, PatternSignal, TradeEvent

_NS: Final = 1_000_000_000
_DIRECTION: Final = {Direction.LONG: "🟢 LONG", Direction.SHORT: "🔴 SHORT"}
_BIAS: Final = {
    Direction.LONG: "🟢 LONG",
    Direction.SHORT: "🔴 SHORT",
    Direction.NEUTRAL: "⚪ NEUTRAL",
}
_REASONS: Final = {
    "stop_loss": "stop loss hit",
    "break_even_stop": "break-even stop hit",
    "trailing_stop": "trailing stop hit",
    "take_profit": "take profit hit",
    "exhaustion": "opposite exhaustion",
    "divergence": "opposite delta divergence",
    "session_end": "session end",
    "max_hold": "maximum holding time",
    "watch_expired": "watch expired",
    "levels_changed": "levels changed",
    "sweep": "book sweep",
}
MAX_LEVELS: Final = 12  # qualified levels listed in a bias alert
MAX_DETAILS: Final = 6  # pattern details listed


def decimals(tick: float) -> int:
    """Decimal places of a tick size: 0.5 -> 1, 0.00001 -> 5, 1.0 -> 0."""
    if not (tick > 0 and math.isfinite(tick)):
        return 2
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


def price(value: float, tick: float) -> str:
    return f"{value:,.{decimals(tick)}f}"


def number(value: float) -> str:
    """A volume, delta or strength: thousands separators, at most 3 significant decimals."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def signed(value: float, unit: str) -> str:
    return f"{'+' if value > 0 else ''}{number(value)} {unit}"


def when(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / _NS, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def reason(text: str) -> str:
    return _REASONS.get(text, text.replace("_", " "))


def direction(d: Direction) -> str:
    return _DIRECTION.get(d, "⚪ NEUTRAL")


def _pattern_line(sig: PatternSignal, tick: float) -> str:
    return (
        f"{sig.pattern.capitalize()} {direction(sig.direction)} @ {price(sig.price, tick)}"
        f" (strength {number(sig.strength)})"
    )


def _details(sig: PatternSignal) -> list[str]:
    shown = [
        f"  {k}: {number(v) if isinstance(v, float) else v}"
        for k, v in sig.details.items()
        if not k.endswith("_ts")
    ]
    return shown[:MAX_DETAILS]


def _bias_line(bias: Bias | None) -> str | None:
    if bias is None:
        return None
    shape = f" · {bias.shape}" if bias.shape else ""
    return f"Bias: {_BIAS.get(bias.bias, '⚪ NEUTRAL')} {number(bias.confidence)}%{shape}"


def initial_stop(ev: TradeEvent, ctx: Context) -> float | None:
    """The stop the trade was entered with: the entry event's (the event itself or its history)."""
    if ev.kind == "entry":
        return ev.stop
    for old in ctx.history:
        if old.kind == "entry" and old.trade_id == ev.trade_id:
            return old.stop
    return None


def _risk(ev: TradeEvent, ctx: Context) -> float | None:
    stop = initial_stop(ev, ctx)
    entry = ev.price if ev.kind == "entry" else ev.entry_price
    if stop is None or not entry:
        return None
    risk = abs(entry - stop)
    return risk if risk > 0 else None


def _progress(ev: TradeEvent, ctx: Context, at: float, what: str) -> str:
    """``what`` +N ticks (+x R) of ``at`` against the entry, in the trade's direction."""
    move = (at - ev.entry_price) * int(ev.direction)
    text = f"{what} {signed(move / ctx.tick_size, 'ticks')}"
    risk = _risk(ev, ctx)
    if risk:
        text += f" ({'+' if move > 0 else ''}{move / risk:.2f} R)"
    return text


def _grade(ev: TradeEvent) -> str:
    parts = []
    if ev.grade:
        parts.append(f"grade {ev.grade}")
    if ev.score:
        parts.append(f"score {ev.score:.0f}/100")
    return " · ".join(parts)


def _head(alert: Alert, line: str) -> list[str]:
    return [f"{HEADERS.get(alert.type, '📊 SIGNAL')} · {alert.symbol}", line]


def _entry(alert: Alert, ev: TradeEvent) -> list[str]:
    ctx, tick = alert.context, alert.context.tick_size
    lines = _head(alert, f"{direction(ev.direction)} · {_grade(ev)}")
    for sid in ev.signals:
        sig = ctx.patterns.get(sid)
        if sig is not None:
            lines.append("Pattern: " + _pattern_line(sig, tick))
    bar = ctx.bars[-1] if ctx.bars else None
    if bar is not None:
        lines.append(
            f"Delta {'+' if bar.delta > 0 else ''}{number(bar.delta)} · volume {number(bar.volume)}"
            f" (1m bar closed {when(bar.close_ts)[11:16]})"
        )
    bias = _bias_line(ctx.bias)
    if bias:
        lines.append(bias)
    if ev.level_kind:
        lines.append(f"Level: {ev.level_kind.upper()} @ {price(ev.level_price, tick)}")
    risk, reward = abs(ev.price - ev.stop), abs(ev.target - ev.price)
    lines.append(
        f"Entry {price(ev.price, tick)} · SL {price(ev.stop, tick)} · TP {price(ev.target, tick)}"
    )
    rr = f"1:{reward / risk:.2f}" if risk > 0 else "n/a"
    lines.append(
        f"Risk {number(risk / tick)} ticks · reward {number(reward / tick)} ticks · R:R {rr}"
    )
    return lines


def _breakeven(alert: Alert, ev: TradeEvent) -> list[str]:
    tick = alert.context.tick_size
    lines = _head(alert, f"{direction(ev.direction)} · {_grade(ev)}")
    lines.append(f"SL moved to entry {price(ev.stop, tick)}: risk-free trade")
    lines.extend(_signals(alert, ev))
    lines.append(
        f"Price {price(ev.price, tick)} · " + _progress(ev, alert.context, ev.price, "open")
    )
    lines.append(f"Entry {price(ev.entry_price, tick)} · TP {price(ev.target, tick)}")
    return lines


def _trail(alert: Alert, ev: TradeEvent) -> list[str]:
    ctx, tick = alert.context, alert.context.tick_size
    lines = _head(alert, f"{direction(ev.direction)} · {_grade(ev)}")
    before = [e for e in ctx.history if e.trade_id == ev.trade_id and e.kind in _STOP_KINDS]
    was = f" (was {price(before[-1].stop, tick)})" if before else ""
    lines.append(f"New SL {price(ev.stop, tick)}{was}")
    moves = sum(1 for e in before if e.kind == "trail") + 1
    lines.append(_progress(ev, ctx, ev.stop, "Locked in") + f" · trail #{moves}")
    lines.extend(_signals(alert, ev))
    lines.append(f"Price {price(ev.price, tick)} · " + _progress(ev, ctx, ev.price, "open"))
    lines.append(f"Entry {price(ev.entry_price, tick)} · TP {price(ev.target, tick)}")
    return lines


_STOP_KINDS: Final = frozenset({"entry", "breakeven", "trail"})


def _exit(alert: Alert, ev: TradeEvent) -> list[str]:
    tick = alert.context.tick_size
    lines = _head(alert, f"{direction(ev.direction)} closed: {reason(ev.reason)}")
    lines.append(f"Exit {price(ev.price, tick)} · entry {price(ev.entry_price, tick)}")
    result = []
    if ev.pnl_ticks is not None:
        result.append(f"P&L {signed(ev.pnl_ticks, 'ticks')}")
    if ev.r_multiple is not None:
        result.append(f"{'+' if ev.r_multiple > 0 else ''}{ev.r_multiple:.2f} R achieved")
    if result:
        lines.append(" · ".join(result))
    if ev.mae_ticks is not None and ev.mfe_ticks is not None:
        lines.append(f"MAE {number(ev.mae_ticks)} ticks · MFE {number(ev.mfe_ticks)} ticks")
    summary = [_grade(ev)] if _grade(ev) else []
    if ev.entry_ts:
        held_min = max(0, ev.ts_event - ev.entry_ts) // (60 * _NS)
        summary.append(f"held {held_min // 60} h {held_min % 60:02d} min")
    if ev.level_kind:
        summary.append(f"from {ev.level_kind.upper()} {price(ev.level_price, tick)}")
    if summary:
        lines.append(" · ".join(summary))
    return lines


def _exit_warning(alert: Alert, ev: TradeEvent) -> list[str]:
    ctx, tick = alert.context, alert.context.tick_size
    lines = _head(
        alert, f"{direction(ev.direction)} at risk: {ev.reason.replace('_', ' ')} against the trade"
    )
    for sid in ev.signals:
        sig = ctx.patterns.get(sid)
        if sig is not None:
            lines.append(_pattern_line(sig, tick))
            lines.extend(_details(sig))
    lines.append(f"Price {price(ev.price, tick)} · " + _progress(ev, ctx, ev.price, "open"))
    lines.append(f"SL {price(ev.stop, tick)} · TP {price(ev.target, tick)}")
    return lines


def _signals(alert: Alert, ev: TradeEvent) -> list[str]:
    tick = alert.context.tick_size
    return [
        "On " + _pattern_line(sig, tick)
        for sid in ev.signals
        if (sig := alert.context.patterns.get(sid)) is not None
    ]


def _other(alert: Alert, ev: TradeEvent) -> list[str]:
    tick = alert.context.tick_size
    lines = _head(alert, f"{direction(ev.direction)} @ {price(ev.price, tick)}")
    if ev.reason:
        lines.append(f"Reason: {reason(ev.reason)}")
    if ev.level_kind:
        lines.append(f"Level: {ev.level_kind.upper()} @ {price(ev.level_price, tick)}")
    lines.extend(_signals(alert, ev))
    return lines


def _bias(alert: Alert, b: Bias) -> list[str]:
    tick = alert.context.tick_size
    lines = _head(
        alert,
        f"{_BIAS.get(b.bias, '⚪ NEUTRAL')} · confidence {number(b.confidence)}%"
        + (f" · shape {b.shape}" if b.shape else ""),
    )
    lines.append(f"Session {b.session_id}")
    lines.append(f"POC {price(b.poc, tick)} · VAH {price(b.vah, tick)} · VAL {price(b.val, tick)}")
    if b.merged_val or b.merged_vah:
        lines.append(f"Merged VA {price(b.merged_val, tick)} – {price(b.merged_vah, tick)}")
    if b.warnings:
        lines.append("Warnings: " + ", ".join(w.replace("_", " ") for w in b.warnings))
    qualified = [lv for lv in b.levels if lv.qualified]
    if qualified:
        lines.append("Qualified levels:")
        for lv in sorted(qualified, key=lambda lv: -lv.price)[:MAX_LEVELS]:
            side = {Direction.LONG: "→ LONG", Direction.SHORT: "→ SHORT"}.get(lv.direction, "")
            lines.append(
                f"  {lv.kind.upper()} {price(lv.price, tick)} {side} ({number(lv.strength)})"
            )
        if len(qualified) > MAX_LEVELS:
            lines.append(f"  … {len(qualified) - MAX_LEVELS} more")
    return lines


def text(alert: Alert) -> str:
    """The alert's full text: header, content lines, then the event time and id."""
    msg = alert.msg
    if isinstance(msg, Bias):
        lines = _bias(alert, msg)
    else:
        body = {
            "entry": _entry,
            "breakeven": _breakeven,
            "trail": _trail,
            "exit": _exit,
            "exit_warning": _exit_warning,
        }.get(alert.type, _other)
        lines = body(alert, msg)
    lines.append(f"{when(msg.ts_event)} · {alert.key}")
    return "\n".join(line for line in lines if line)
