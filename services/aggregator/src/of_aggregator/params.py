"""The aggregator's rules in one Struct (framing and the trade machine), and their overrides.

Service-wide from ``OF_AGGREGATOR_*`` (settings.py), per instrument from the registry's
``[instruments.SYMBOL.aggregator]`` tables; an override names only what it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from of_aggregator.framing import FramingParams
from of_aggregator.machine import MachineParams


class AggregatorParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every rule of the stage: ``framing`` (``FramingParams``) and ``machine``
    (``MachineParams``, with its ``weights``, ``risk`` and ``cooldown_s``)."""

    framing: FramingParams = msgspec.field(default_factory=FramingParams)
    machine: MachineParams = msgspec.field(default_factory=MachineParams)


def _deep(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            out[key] = _deep(old, value)
        else:
            out[key] = value
    return out


def overridden(base: AggregatorParams, over: Mapping[str, Any], where: str) -> AggregatorParams:
    """``base`` with the fields ``over`` names replaced (tables merge field by field, so
    ``{"machine": {"cooldown_s": {"sweep": 90}}}`` keeps the other cooldowns). A field that does
    not exist or a value of the wrong type is a ``ValueError`` naming ``where`` and the path."""
    if not over:
        return base
    merged = _deep(msgspec.to_builtins(base), over)
    try:
        return msgspec.convert(merged, AggregatorParams)
    except msgspec.ValidationError as err:
        raise ValueError(f"{where}: {str(err).replace('`', '')}") from None
