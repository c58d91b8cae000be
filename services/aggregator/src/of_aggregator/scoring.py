"""Composite score, grades and SL/TP of an entry: the README's tables as pure functions.

No state: the trade machine calls these with the pattern, the level and the frame.
"""

from __future__ import annotations

import msgspec

from of_aggregator.framing import Frame, QualifiedLevel
from ofcommon.messages import Direction


class ScoreWeights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """README "Composite Scoring System": a pattern's strength times its kind's weight, the
    level's strength times ``level``, an aligned bias's confidence times ``bias``, minus
    ``warning_penalty`` when the frame warns against the entry's direction."""

    absorption: float = 0.30
    divergence: float = 0.25
    initiative: float = 0.20
    sweep: float = 0.20
    other: float = 0.15
    level: float = 0.25
    bias: float = 0.20
    warning_penalty: float = 10.0

    def of(self, pattern: str) -> float:
        return {
            "absorption": self.absorption,
            "divergence": self.divergence,
            "initiative": self.initiative,
            "sweep": self.sweep,
        }.get(pattern, self.other)


# README "Signal Quality Grading": (minimum score, grade), best first.
GRADES: tuple[tuple[float, str], ...] = ((85.0, "A+"), (70.0, "A"), (55.0, "B"))

# A frame warning counts against entries in this direction.
_WARNED = {"vah_rejection": Direction.LONG, "val_rejection": Direction.SHORT}


def grade(score: float) -> str:
    for floor, name in GRADES:
        if score >= floor:
            return name
    return "C"


def composite(
    w: ScoreWeights,
    direction: Direction,
    patterns: list[tuple[str, float]],
    level: QualifiedLevel | None,
    frame: Frame | None,
) -> float:
    """The score of an entry in ``direction`` backed by ``patterns`` ((kind, strength): the
    trigger first, then the supporting same-direction patterns, at most one of each kind)."""
    score = sum(w.of(kind) * strength for kind, strength in patterns)
    if level is not None:
        score += w.level * level.strength
    if frame is not None:
        if frame.direction is direction:
            score += w.bias * frame.confidence
        if any(_WARNED.get(x) is direction for x in frame.warnings):
            score -= w.warning_penalty
    return max(0.0, min(100.0, score))


class Risk(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """README "SL/TP Calculation", tied to the level (seed defect §19.9: the seed ignored it).

    A LONG at level L: SL = L - ``stop_va`` x (VAH - VAL), at least ``min_stop_ticks`` below
    the entry; TP = VAH (SHORT: mirror, TP = VAL). An entry whose TP is not beyond it, or whose
    reward / risk is under ``min_rr``, is rejected."""

    stop_va: float = 0.1
    min_stop_ticks: int = 4
    min_rr: float = 1.5


def sl_tp(
    r: Risk, direction: Direction, entry: float, level: float, frame: Frame, tick: float
) -> tuple[float, float]:
    """(stop, target) of an entry at ``entry`` off ``level``."""
    buffer = r.stop_va * (frame.vah - frame.val)
    floor = r.min_stop_ticks * tick
    if direction is Direction.LONG:
        return min(level - buffer, entry - floor), frame.vah
    return max(level + buffer, entry + floor), frame.val


def rejection(r: Risk, direction: Direction, entry: float, stop: float, target: float) -> str:
    """Why an entry with this stop and target may not be taken ("" when it may)."""
    risk = (entry - stop) * direction
    reward = (target - entry) * direction
    if risk <= 0:
        return "stop_not_beyond_entry"
    if reward <= 0:
        return "target_not_beyond_entry"
    if reward / risk < r.min_rr:
        return f"reward_risk_below_min:{reward / risk:.2f}<{r.min_rr:g}"
    return ""
