"""The size thresholds of one instrument's detectors: the registry's values (``fixed``) or
multiples of the instrument's rolling bar-volume median (``auto``), with an explicit warm-up.

``auto`` makes one configuration fit BTCUSDT coins, MT5 lots and tick-count FX alike: every size
is a multiple of the median volume of the instrument's last ``window`` closed bars (the bar being
judged excluded). The median, not the mean, so that the episodes a detector looks for do not move
their own threshold. Tick thresholds (displacement, body, new extreme) always come from the
registry: ticks are already in the instrument's own unit.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

import msgspec

from ofcommon.instruments import Instrument

# auto: threshold = multiple x median bar volume; chosen on simulator seeds 1-3 (docs/quality.md)
AUTO_ABSORPTION: Final = 1.6  # one price row takes 1.6 x a typical bar's whole volume
AUTO_DELTA: Final = 1.0  # a bar's delta as large as a typical bar's whole volume
AUTO_LEVEL: Final = 0.6  # a swept level holds less than 60 % of a typical bar's volume
AUTO_SWEEP: Final = 0.3  # a sweep trades 30 % of a typical bar's volume in its burst
# fixed: a sweep trades at least this share of the thin-book size per level swept
FIXED_SWEEP_SHARE: Final = 0.25


class Rolling(msgspec.Struct):
    """The last ``size`` values in arrival order, with a sorted copy for order statistics."""

    size: int
    values: list[float] = msgspec.field(default_factory=list)
    ordered: list[float] = msgspec.field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)
        bisect.insort(self.ordered, value)
        if len(self.values) > self.size:
            old = self.values.pop(0)
            del self.ordered[bisect.bisect_left(self.ordered, old)]

    def median(self) -> float:
        n = len(self.ordered)
        if not n:
            return 0.0
        mid = n // 2
        return self.ordered[mid] if n % 2 else 0.5 * (self.ordered[mid - 1] + self.ordered[mid])


@dataclass(frozen=True, slots=True)
class Limits:
    """What the detectors compare sizes with, for the bar or event being judged."""

    ready: bool  # warm-up done: enough closed bars seen
    absorption_volume: float
    initiative_delta: float
    sweep_level_volume: float
    sweep_volume: float
    median_volume: float


class Scale(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The rolling statistics as of one closed bar (that bar included)."""

    close_ts: int
    bars: int
    median: float


def limits(inst: Instrument, mode: str, bars: int, median: float, warmup: int) -> Limits:
    """The thresholds given ``bars`` closed bars seen with a median volume of ``median``."""
    ready = bars >= warmup
    if mode == "fixed":
        return Limits(
            ready,
            inst.absorption.min_aggressive_volume,
            inst.initiative.min_delta_threshold,
            inst.sweep.max_volume_per_level,
            FIXED_SWEEP_SHARE * inst.sweep.thin_book_threshold * inst.sweep.min_levels_swept,
            median,
        )
    return Limits(
        ready and median > 0,
        AUTO_ABSORPTION * median,
        AUTO_DELTA * median,
        AUTO_LEVEL * median,
        AUTO_SWEEP * median,
        median,
    )
