"""Delta divergence, swing form (landscape §2.10): price makes a new swing extreme while the
cumulative delta fails to follow (seed §8.5, with its sign and unit defects fixed).

On each closed bar c, over the ``lookback_bars`` closed bars before it: P1 = the highest swing
pivot, a bar whose high is above the highs of the ``PIVOT_BARS`` bars on each side of it (a
fractal); origin = the lowest cumulative delta (``Bar.cvd_total``) of the ``PIVOT_BARS`` bars
before P1, the leg into the pivot. Bearish divergence -> SHORT
when c's high is at least ``min_price_new_extreme_ticks`` instrument ticks above P1's, the rise of
cumulative delta into P1 (P1's cvd - origin) is at least ``SWING_SHARE`` x the delta threshold,
and c's rise from the same origin is at most ``delta_failure_pct`` of it. Rises are differences
from one origin, so the test holds for either sign of the cumulative delta (the seed compared raw
peak values, which inverts for negative delta). Mirror (lows, falls) -> LONG. One signal per P1.
Decision time: c's close (its cumulative delta is known then).
"""

from __future__ import annotations

from typing import Final

import msgspec

from of_patterns.found import Found, clamp01
from of_patterns.history import BarPoint
from of_patterns.thresholds import Limits
from ofcommon.instruments import Instrument
from ofcommon.messages import Direction

SWING_SHARE: Final = 0.5
PIVOT_BARS: Final = 3


class DivergenceState(msgspec.Struct):
    fired_high: int = 0  # open_ts of the last P1 a bearish signal used
    fired_low: int = 0


def on_bar(
    state: DivergenceState, history: list[BarPoint], inst: Instrument, lim: Limits
) -> Found | None:
    """``history``: closed bars, oldest first, the bar being judged last."""
    n = inst.divergence.lookback_bars
    if len(history) < n + 1:
        return None
    window, c = history[-n - 1 : -1], history[-1]
    for swing in (1, -1):
        found = _check(state, window, c, swing, inst, lim)
        if found is not None:
            return found
    return None


def _check(
    state: DivergenceState,
    window: list[BarPoint],
    c: BarPoint,
    swing: int,
    inst: Instrument,
    lim: Limits,
) -> Found | None:
    p = inst.divergence
    ext = [b.high if swing > 0 else -b.low for b in window]
    k = PIVOT_BARS
    pivots = [
        i
        for i in range(k, len(window) - k)
        if all(ext[j] < ext[i] for j in range(i - k, i + k + 1) if j != i)
    ]
    if not pivots:
        return None
    i1 = max(pivots, key=lambda i: (ext[i], i))
    p1 = window[i1]
    if p1.open_ts == (state.fired_high if swing > 0 else state.fired_low):
        return None
    new_ticks = (
        swing * ((c.high if swing > 0 else c.low) - (p1.high if swing > 0 else p1.low))
    ) / (inst.tick_size)
    if new_ticks + 1e-9 < p.min_price_new_extreme_ticks or new_ticks <= 0:
        return None
    cvds = [swing * b.cvd for b in window[i1 - k : i1]]
    origin = min(cvds)
    rise1 = swing * p1.cvd - origin
    rise2 = swing * c.cvd - origin
    if rise1 < SWING_SHARE * lim.initiative_delta or rise1 <= 0:
        return None
    if rise2 > p.delta_failure_pct * rise1:
        return None
    if swing > 0:
        state.fired_high = p1.open_ts
    else:
        state.fired_low = p1.open_ts
    kept = rise2 / rise1
    strength = 60.0 * clamp01((1.0 - kept) / max(2.0 * (1.0 - p.delta_failure_pct), 1e-9))
    strength += 40.0 * clamp01(new_ticks / (2.0 * max(p.min_price_new_extreme_ticks, 1.0)))
    price = c.high if swing > 0 else c.low
    return Found(
        "divergence",
        Direction.SHORT if swing > 0 else Direction.LONG,
        price,
        strength,
        c.close_ts,
        {
            "type": "bearish_divergence" if swing > 0 else "bullish_divergence",
            "price_extreme": price,
            "prev_extreme": p1.high if swing > 0 else p1.low,
            "new_extreme_ticks": round(new_ticks, 2),
            "cvd_at_prev_extreme": p1.cvd,
            "cvd_now": c.cvd,
            "delta_kept": round(kept, 4),
            "onset_ts": window[0].open_ts,
        },
    )
