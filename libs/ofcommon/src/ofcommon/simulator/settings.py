"""The ``sim`` service's settings: ``OF_SIM_*`` variables, validated, and the run they describe.

A bad value stops the service with an error naming the variable, like every other setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Final

import msgspec

from ofcommon.instruments import Instrument, load_registry
from ofcommon.settings import BaseSettings
from ofcommon.simulator.generator import SimConfig
from ofcommon.simulator.labels import EPISODE_PATTERNS

__all__ = ["DEFAULT_START", "SimSettings"]

DEFAULT_START: Final = "2024-03-05T14:30:00Z"  # a Tuesday, 09:30 New York: every session open


class SimSettings(BaseSettings, kw_only=True, frozen=True):
    """``OF_SIM_*``: what to simulate, from when, how fast and where the labels go."""

    sim_seed: int = 42
    sim_instruments: str = "BTCUSDT,NAS100USDT,EURUSD"
    sim_speed: str = "1"
    sim_start: str = DEFAULT_START
    sim_duration_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    sim_labels_path: str = "var/sim/labels.jsonl"
    sim_episode_gap_s: Annotated[float, msgspec.Meta(gt=0)] = 180.0
    sim_patterns: str = ""
    sim_heartbeat_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    sim_book_depth: Annotated[int, msgspec.Meta(ge=5, le=200)] = 20
    sim_resume: bool = True

    docs: ClassVar[Mapping[str, str]] = {
        **BaseSettings.docs,
        "sim_seed": "random seed: one seed and one set of settings give byte-identical output",
        "sim_instruments": "groups and/or symbols to simulate, comma-separated (OF_INSTRUMENTS"
        " narrows it further)",
        "sim_speed": "1 = real time paced by event time, N = N times faster, max = as fast as"
        " Redis takes it",
        "sim_start": "event time of the first message, RFC 3339 with a zone (fixed by default so"
        " runs are reproducible)",
        "sim_duration_s": "seconds of event time to simulate; 0 = until stopped",
        "sim_labels_path": "JSON-lines file of the injected episodes (docs/simulator.md); empty ="
        " none",
        "sim_episode_gap_s": "mean seconds of plain background between two episodes of an"
        " instrument",
        "sim_patterns": "episode patterns to inject, comma-separated; empty = all five",
        "sim_heartbeat_s": "seconds between heartbeats on every stream; 0 = none",
        "sim_book_depth": "levels per side of the simulated book",
        "sim_resume": "after a restart, continue after the last entry already in the streams",
    }

    def __post_init__(self) -> None:
        self.pace()
        self.start_ns()
        self.patterns()

    def pace(self) -> float | None:
        """Event seconds per wall second, or None for ``max``."""
        if self.sim_speed.strip().lower() == "max":
            return None
        try:
            speed = float(self.sim_speed)
        except ValueError:
            speed = 0.0
        if not speed > 0 or speed == float("inf"):
            raise ValueError(
                f"OF_SIM_SPEED: expected 'max' or a positive number, got {self.sim_speed!r}"
            )
        return speed

    def start_ns(self) -> int:
        try:
            start = datetime.fromisoformat(self.sim_start)
        except ValueError:
            start = None
        if start is None or start.tzinfo is None:
            raise ValueError(
                f"OF_SIM_START: expected an RFC 3339 time with a zone, e.g. {DEFAULT_START},"
                f" got {self.sim_start!r}"
            )
        delta = start.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000

    def patterns(self) -> tuple[str, ...]:
        chosen = [p.strip().lower() for p in self.sim_patterns.split(",") if p.strip()]
        unknown = sorted(set(chosen) - set(EPISODE_PATTERNS))
        if unknown:
            raise ValueError(
                f"OF_SIM_PATTERNS: unknown pattern(s) {', '.join(unknown)}"
                f" (known: {', '.join(EPISODE_PATTERNS)})"
            )
        return tuple(dict.fromkeys(chosen)) if chosen else EPISODE_PATTERNS

    def instruments_to_run(self) -> tuple[Instrument, ...]:
        registry = load_registry(self.registry_file)
        wanted = registry.select(self.sim_instruments)
        allowed = {i.symbol for i in registry.select(self.instruments)}
        return tuple(i for i in wanted if i.symbol in allowed)

    def config(self, instruments: tuple[Instrument, ...]) -> SimConfig:
        return SimConfig(
            instruments=instruments,
            start_ns=self.start_ns(),
            seed=self.sim_seed,
            duration_ns=round(self.sim_duration_s * 1e9),
            heartbeat_ns=round(self.sim_heartbeat_s * 1e9),
            book_depth=self.sim_book_depth,
            episode_gap_s=self.sim_episode_gap_s,
            patterns=self.patterns(),
        )
