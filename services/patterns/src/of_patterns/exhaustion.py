"""Exhaustion: a push that makes new extremes on drying volume and fading delta (seed §8.4,
landscape §2.7). Decision time: the close of the last bar of the window.

Window W = the last ``min_bars_declining`` + 1 closed bars (one window for every test: the seed
mixed n and n + 1). Bullish exhaustion -> SHORT when: W's first high is above every high of the
``LOOKBACK`` bars before W and each bar of W makes a higher high; the push starts with effort (W's
first bar trades at least the median bar volume of ``thresholds.Limits``), then volume never rises
across W and falls by at least ``volume_decline_pct`` from W's first bar to its last; the push is
driven by aggressors (W's first bar has a push-side delta of at least ``DRIVE_DELTA`` x the delta
threshold D: exhaustion is aggressors drying up, so they must have been there) and its last bar
keeps at most ``DELTA_FADE`` of that delta. With
``requires_contrarian_imbalance`` the last bar needs a contrarian row in the top 30 % of its range
(``history.contrarian_rows``: a bid-dominant footprint imbalance, or bids >= 2.5 x asks on one row
as the seed tested it) when its footprint has ``CONTRARIAN_MIN_ROWS`` rows or more and shows any
imbalance (a bar without imbalances, or of a few coarse rows, cannot tell); it adds strength
anyway. Mirror for bearish exhaustion -> LONG at the lows.
"""

from __future__ import annotations

import itertools
from typing import Final

from of_patterns.found import Found, clamp01
from of_patterns.history import BarPoint
from of_patterns.thresholds import Limits
from ofcommon.instruments import Instrument
from ofcommon.messages import Direction

LOOKBACK: Final = 10
DELTA_FADE: Final = 0.5
# The push's first bar: push-side delta >= this x the delta threshold D (chosen on seeds 1-3: a
# push on balanced flow made the only exhaustion fire on their episode-free bars).
DRIVE_DELTA: Final = 0.25
# Fewer footprint rows than this cannot place an imbalance at the bar's extreme (a coarse row
# spans most of the bar): the contrarian requirement is then not applied.
CONTRARIAN_MIN_ROWS: Final = 5


def on_bar(history: list[BarPoint], inst: Instrument, lim: Limits) -> Found | None:
    """``history``: closed bars, oldest first, the bar being judged last."""
    p = inst.exhaustion
    n = p.min_bars_declining + 1
    if len(history) < n + 1:
        return None
    w = history[-n:]
    before = history[-n - LOOKBACK : -n]
    for push in (1, -1):
        found = _check(w, before, push, inst, lim)
        if found is not None:
            return found
    return None


def _check(
    w: list[BarPoint], before: list[BarPoint], push: int, inst: Instrument, lim: Limits
) -> Found | None:
    p = inst.exhaustion
    ext = [b.high if push > 0 else -b.low for b in w]
    prior = max((b.high if push > 0 else -b.low) for b in before)
    if ext[0] <= prior or any(b <= a for a, b in itertools.pairwise(ext)):
        return None
    vols = [b.volume for b in w]
    if vols[0] < lim.median_volume or any(b > a for a, b in itertools.pairwise(vols)):
        return None
    decline = (vols[0] - vols[-1]) / vols[0]
    if decline < p.volume_decline_pct:
        return None
    first, last = push * w[0].delta, push * w[-1].delta
    if first < DRIVE_DELTA * lim.initiative_delta or first <= 0 or last > DELTA_FADE * first:
        return None
    tip = w[-1]
    contrarian = tip.sell_imbalances_top if push > 0 else tip.buy_imbalances_bottom
    if p.requires_contrarian_imbalance and contrarian == 0 and _any_imbalance(tip):
        return None
    fade = 1.0 - max(last, 0.0) / first
    strength = 40.0 * clamp01(decline / (2.0 * max(p.volume_decline_pct, 1e-9)))
    strength += 40.0 * clamp01(fade) + 20.0 * (contrarian > 0)
    price = tip.high if push > 0 else tip.low
    return Found(
        "exhaustion",
        Direction.SHORT if push > 0 else Direction.LONG,
        price,
        strength,
        tip.close_ts,
        {
            "type": "bullish_exhaustion" if push > 0 else "bearish_exhaustion",
            "bars": len(w),
            "volume_decline": round(decline, 4),
            "first_delta": w[0].delta,
            "drive_delta_min": round(DRIVE_DELTA * lim.initiative_delta, 6),
            "last_delta": w[-1].delta,
            "contrarian_imbalances": contrarian,
            "extreme": price,
            "onset_ts": w[0].open_ts,
        },
    )


def _any_imbalance(b: BarPoint) -> bool:
    return b.imbalance_rows > 0 and b.footprint_rows >= CONTRARIAN_MIN_ROWS
