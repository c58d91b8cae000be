"""Delta divergence, swing form (seed §8.5 with §19 #13-14 fixed): a new price extreme beyond the
window's pivot while cumulative delta's rise from the same origin fails, for either sign of CVD."""

from __future__ import annotations

import pytest
from tests.support.pattern_bars import INST, bar

from of_patterns import divergence
from of_patterns.history import BarPoint, point
from of_patterns.thresholds import Limits
from ofcommon.messages import Direction

LIM = Limits(True, 50.0, 30.0, 15.0, 6.0, 20.0)  # significance: 0.5 x delta 30 = 15
# lookback 10: ten window bars, then the bar judged. The pivot P1 (high 18002.0) is bar 5, above
# the three bars on each side; the leg into it (bars 2-4) starts from a CVD of 20.
HIGHS = [18000.5, 18000.8, 18001.2, 18001.5, 18001.8, 18002.0, 18001.7, 18001.4, 18001.5, 18001.8]
CVDS = [0.0, -10.0, 20.0, 50.0, 80.0, 100.0, 70.0, 50.0, 55.0, 60.0]


def swing(
    high: float = 18002.3, cvd: float = 60.0, shift: float = 0.0, sign: int = 1
) -> list[BarPoint]:
    """The window and the judged bar; ``shift`` moves every CVD, ``sign`` mirrors the tape."""
    out = []
    for k, (h, c) in enumerate([*zip(HIGHS, CVDS, strict=True), (high, cvd)]):
        hi, lo = (h, h - 0.5) if sign > 0 else (36000.0 - h + 0.5, 36000.0 - h)
        out.append(point(bar(k, lo, hi, lo, hi, 40.0, 0.0, cvd=sign * c + shift)))
    return out


def test_bearish_divergence() -> None:
    bars = swing()
    found = divergence.on_bar(divergence.DivergenceState(), bars, INST, LIM)
    assert found is not None
    assert (found.direction, found.price, found.ts) == (
        Direction.SHORT,
        18002.3,
        bars[-1].close_ts,
    )
    # rise into P1 from the leg's origin (20): 80; now 40: kept half
    assert found.details["delta_kept"] == pytest.approx(0.5)
    assert found.details["new_extreme_ticks"] == pytest.approx(3.0)


@pytest.mark.parametrize("shift", [-1000.0, 1000.0])
def test_either_sign_of_cumulative_delta(shift: float) -> None:
    """The seed's ``latest < prev x 0.8`` inverts for negative CVD; rises from an origin do not."""
    found = divergence.on_bar(divergence.DivergenceState(), swing(shift=shift), INST, LIM)
    assert found is not None
    assert found.direction == Direction.SHORT


def test_bullish_divergence_is_the_mirror() -> None:
    bars = swing(sign=-1)
    found = divergence.on_bar(divergence.DivergenceState(), bars, INST, LIM)
    assert found is not None
    assert found.direction == Direction.LONG
    assert found.price == pytest.approx(36000.0 - 18002.3)


@pytest.mark.parametrize(
    ("high", "cvd"),
    [
        (18002.3, 90.0),  # kept 70 / 80 > 0.8: delta confirmed the high
        (18002.1, 60.0),  # 1 tick beyond P1, needs 2
        (18001.9, 20.0),  # no new extreme
    ],
)
def test_negatives(high: float, cvd: float) -> None:
    state = divergence.DivergenceState()
    assert divergence.on_bar(state, swing(high, cvd), INST, LIM) is None


def test_an_insignificant_swing_is_no_divergence() -> None:
    small = Limits(True, 50.0, 300.0, 15.0, 6.0, 20.0)  # significance 150 > the rise of 80
    assert divergence.on_bar(divergence.DivergenceState(), swing(), INST, small) is None


def test_a_high_without_three_lower_bars_on_each_side_is_no_pivot() -> None:
    bars = swing()
    # bar 7 now rises above P1: no fractal pivot remains in the window
    bars[7] = point(bar(7, 18001.5, 18002.05, 18001.5, 18002.0, 40.0, 0.0, cvd=50.0))
    assert divergence.on_bar(divergence.DivergenceState(), bars, INST, LIM) is None


def test_one_signal_per_pivot() -> None:
    state = divergence.DivergenceState()
    bars = swing()
    assert divergence.on_bar(state, bars, INST, LIM) is not None
    later = point(bar(11, 18002.0, 18002.5, 18002.0, 18002.4, 40.0, 0.0, cvd=55.0))
    assert divergence.on_bar(state, [*bars[1:], later], INST, LIM) is None
