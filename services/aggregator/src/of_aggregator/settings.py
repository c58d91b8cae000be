"""The aggregator's settings: the stage's ownership settings plus the rules of framing and the
trade machine. Defaults are ``AggregatorParams``'s (one place); docs/aggregator.md explains each.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Final

import msgspec

from of_aggregator.machine import MachineParams
from of_aggregator.params import AggregatorParams, overridden
from ofcommon.settings import OwnedStageSettings, PositiveFloat

_P: Final = AggregatorParams()
_M: Final = _P.machine
Score = Annotated[float, msgspec.Meta(ge=0, le=100)]
# The rules with a variable of their own, as paths into AggregatorParams.
_OWN: Final = {
    "aggregator_min_score": ("machine", "min_score"),
    "aggregator_min_rr": ("machine", "risk", "min_rr"),
    "aggregator_watch_rows": ("machine", "watch_rows"),
    "aggregator_counter_bias": ("machine", "counter_bias"),
    "aggregator_watch_timeout_s": ("machine", "watch_timeout_s"),
    "aggregator_max_hold_s": ("machine", "max_hold_s"),
    "aggregator_exit_strength": ("machine", "exit_strength"),
}


class AggregatorSettings(OwnedStageSettings, kw_only=True, frozen=True):
    aggregator_min_score: Score = _M.min_score
    aggregator_min_rr: PositiveFloat = _M.risk.min_rr
    aggregator_watch_rows: PositiveFloat = _M.watch_rows
    aggregator_counter_bias: bool = _M.counter_bias
    aggregator_watch_timeout_s: PositiveFloat = _M.watch_timeout_s
    aggregator_max_hold_s: PositiveFloat = _M.max_hold_s
    aggregator_exit_strength: Score = _M.exit_strength
    aggregator_params: str = ""

    docs: ClassVar = {
        **OwnedStageSettings.docs,
        "aggregator_min_score": "composite score an entry needs (0-100)",
        "aggregator_min_rr": "minimum reward-to-risk of an entry; below it the entry is rejected",
        "aggregator_watch_rows": "profile rows from a level within which price watches it",
        "aggregator_counter_bias": "also trade levels against the daily bias",
        "aggregator_watch_timeout_s": "event-time seconds a watch lasts without an entry",
        "aggregator_max_hold_s": "event-time seconds a trade is held at most",
        "aggregator_exit_strength": "opposite exhaustion/divergence strength that closes a trade",
        "aggregator_params": "every other rule, as a JSON object of overrides:"
        ' {"framing": {...}, "machine": {"weights": {...}, "risk": {...}, "cooldown_s": {...},'
        ' ...}} (docs/aggregator.md "Settings"); the rules above keep their own variables',
    }

    def __post_init__(self) -> None:
        self.params()

    def params(self) -> AggregatorParams:
        """The service-wide rules: the defaults, ``OF_AGGREGATOR_PARAMS``, then the variables
        of their own (a rule may be set in one place only)."""
        over = _json(self.aggregator_params)
        for field, path in _OWN.items():
            if _has(over, path):
                raise ValueError(
                    f"OF_AGGREGATOR_PARAMS: {'.'.join(path)} has its own variable,"
                    f" OF_{field.upper()}"
                )
        base = overridden(_P, over, "OF_AGGREGATOR_PARAMS")
        own: dict[str, Any] = {}
        for field, path in _OWN.items():
            _put(own, path, getattr(self, field))
        return overridden(base, own, "OF_AGGREGATOR_*")

    def machine(self) -> MachineParams:
        return self.params().machine


def _json(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"OF_AGGREGATOR_PARAMS: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError("OF_AGGREGATOR_PARAMS: expected a JSON object")
    return value


def _has(tree: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _put(tree: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value
