"""Strategy status and scanner priority of one instrument, from the trade machine's state.

README "Strategy Status Labels" and "Scanner Priority Scoring" as one pure function.
"""

from __future__ import annotations

from typing import Final

from of_aggregator.machine import MachineState, Phase
from ofcommon.messages import Direction, StrategyStatus

# README "Scanner Priority Scoring": base score per status.
BASE: Final[dict[str, int]] = {
    "IN_TRADE": 100,
    "TRAILING": 95,
    "BREAK_EVEN": 90,
    "ENTRY_READY": 85,
    "AT_LEVEL_SCANNING": 70,
    "WATCHING": 60,
    "WAITING_FOR_PRICE": 40,
    "NO_LEVELS": 20,
    "NO_DATA": 10,
    "OFFLINE": 5,
    "IDLE": 0,
}
STEP_BONUS: Final = 3
_DONE: Final = frozenset({"active", "triggered", "completed"})
_IN_TRADE: Final = {
    Phase.POSITION_OPEN: "IN_TRADE",
    Phase.BREAK_EVEN: "BREAK_EVEN",
    Phase.TRAILING: "TRAILING",
}


def _near_level(st: MachineState, reach: float) -> bool:
    f, bar = st.frame, st.last_bar
    if f is None or bar is None:
        return False
    return any(bar.low - reach <= lv.price <= bar.high + reach for lv in f.levels)


def status(st: MachineState, reach: float, ts: int) -> StrategyStatus:
    """The snapshot of ``st`` at event time ``ts``; ``reach``: the distance the machine watches
    levels within."""
    f, bar, w, t = st.frame, st.last_bar, st.watch, st.trade
    near = _near_level(st, reach)
    steps = [
        "active" if f is not None else "inactive",  # 1 profile framing
        "active" if f is not None and f.levels else "inactive",  # 2 qualified levels
        "triggered" if near or w is not None or t is not None else "waiting",  # 3 price at level
        "triggered" if t is not None else "watching" if w is not None else "inactive",  # 4
        "triggered" if t is not None else "watching" if w is not None else "inactive",  # 5
        "active" if t is not None else "completed" if st.trades_closed else "inactive",  # 6
    ]
    if f is None:
        label = "NO_DATA"
    elif not f.levels:
        label = "NO_LEVELS"
    elif t is not None:
        label = _IN_TRADE.get(st.phase, "IN_TRADE")
    elif w is not None:
        label = "WATCHING"
    elif near:
        label = "AT_LEVEL_SCANNING"
    else:
        label = "WAITING_FOR_PRICE"
    bonus = STEP_BONUS * sum(s in _DONE for s in steps)
    level = t.level if t is not None else w.level if w is not None else None
    return StrategyStatus(
        ts_event=ts,
        status=label,
        priority=BASE[label] + bonus,
        steps=steps,
        phase=st.phase.value,
        bias=f.direction if f is not None else Direction.NEUTRAL,
        price=bar.close if bar is not None else 0.0,
        level_kind=level.kind if level is not None else "",
        level_price=level.price if level is not None else 0.0,
        trade_id=t.trade_id if t is not None else w.trade_id if w is not None else "",
    )
