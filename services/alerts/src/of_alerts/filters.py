"""Which events become alerts: by alert type, trade grade and age (instruments are chosen by
``OF_INSTRUMENTS``, the streams read). Pure."""

from __future__ import annotations

import msgspec

from of_alerts.kinds import GRADES
from ofcommon.messages import Bias, Message, TradeEvent


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    types: frozenset[str]
    min_grade_rank: int = len(GRADES) - 1  # index in GRADES of the lowest grade alerted
    max_age_ms: int = 0  # 0: no limit


def skip_reason(alert_type: str | None, msg: Message, age_ms: int, f: Filters) -> str | None:
    """Why ``msg`` is not alerted, or None to alert it. ``age_ms``: since it reached Redis."""
    if alert_type is None or not isinstance(msg, TradeEvent | Bias):
        return "not_an_alert"
    if alert_type not in f.types:
        return "type"
    if (
        isinstance(msg, TradeEvent)
        and msg.grade in GRADES
        and GRADES.index(msg.grade) > f.min_grade_rank
    ):
        return "grade"
    if f.max_age_ms and age_ms > f.max_age_ms:
        return "stale"
    return None
