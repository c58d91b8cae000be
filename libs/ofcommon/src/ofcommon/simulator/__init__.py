"""A seeded, deterministic order-flow simulator: trades and L2 books of several instruments with
injected, labelled episodes of absorption, initiative, sweep, exhaustion and delta divergence.
"""

from __future__ import annotations

from ofcommon.simulator.generator import SimConfig, events, instrument_events, simulate
from ofcommon.simulator.labels import EPISODE_PATTERNS, Label, LabelWriter, read_labels, score

__all__ = [
    "EPISODE_PATTERNS",
    "Label",
    "LabelWriter",
    "SimConfig",
    "events",
    "instrument_events",
    "read_labels",
    "score",
    "simulate",
]
