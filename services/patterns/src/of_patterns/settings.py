"""Settings of the patterns stage: the threshold mode and the rolling statistics behind ``auto``.
The stage's ownership and checkpoint settings are the common ``OwnedStageSettings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

import msgspec

from ofcommon.settings import OwnedStageSettings

ThresholdMode = Literal["auto", "fixed"]


class PatternsSettings(OwnedStageSettings, kw_only=True, frozen=True):
    patterns_threshold_mode: ThresholdMode = "auto"
    patterns_timeframe: Literal["1m", "5m", "15m", "1h"] = "1m"
    patterns_auto_window_bars: Annotated[int, msgspec.Meta(ge=5, le=10_000)] = 60
    patterns_warmup_bars: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 20

    docs: ClassVar[Mapping[str, str]] = {
        **OwnedStageSettings.docs,
        "patterns_threshold_mode": "pattern size thresholds: auto (rolling statistics of the"
        " instrument) or fixed (the registry's values)",
        "patterns_timeframe": "the bar timeframe the bar-based pattern detectors read",
        "patterns_auto_window_bars": "bars in the rolling statistics of the auto thresholds",
        "patterns_warmup_bars": "closed bars seen before any pattern signal (both modes)",
    }

    def __post_init__(self) -> None:
        if self.patterns_warmup_bars > self.patterns_auto_window_bars:
            raise ValueError(
                f"patterns_warmup_bars ({self.patterns_warmup_bars}) exceeds"
                f" patterns_auto_window_bars ({self.patterns_auto_window_bars})"
            )
