"""What a detector reports and how it becomes a ``PatternSignal``: the decision time, the
deterministic id and the named evidence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final, Literal

from ofcommon.messages import Direction, PatternSignal

Pattern = Literal["absorption", "initiative", "sweep", "exhaustion", "divergence"]
Evidence = dict[str, float | int | str | bool]

# A Consumption event's traded/cancelled split uses the trades up to analytics' matching window
# (1 s) after the removal: a detection made from it is knowable only then.
SETTLE_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Found:
    """A detection. ``ts`` is the decision time: the event time at which everything the
    detection uses was known (a bar's close, or the event that completed the pattern)."""

    pattern: Pattern
    direction: Direction
    price: float
    strength: float
    ts: int
    details: Evidence = field(default_factory=dict)


def signal_id(symbol: str, timeframe: str, found: Found) -> str:
    """A pure function of what identifies the detection: a re-run gives the same id."""
    key = f"{symbol}|{found.pattern}|{timeframe}|{found.ts}|{int(found.direction)}|{found.price!r}"
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def to_signal(symbol: str, timeframe: str, found: Found) -> PatternSignal:
    return PatternSignal(
        signal_id=signal_id(symbol, timeframe, found),
        ts_event=found.ts,
        pattern=found.pattern,
        direction=found.direction,
        price=found.price,
        strength=round(max(0.0, min(100.0, found.strength)), 1),
        timeframe=timeframe,
        details=dict(found.details),
    )


def clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
