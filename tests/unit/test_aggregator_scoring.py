"""Composite score, grades and SL/TP against the seed's golden vectors (spec §10, §16.5, §20)
and the README tables, each expected value computed here."""

from __future__ import annotations

import pytest

from of_aggregator.framing import Frame, QualifiedLevel
from of_aggregator.scoring import GRADES, Risk, ScoreWeights, composite, grade, rejection, sl_tp
from ofcommon.messages import Direction

W = ScoreWeights()
LONG, SHORT = Direction.LONG, Direction.SHORT


def frame(direction: Direction, confidence: float, warnings: tuple[str, ...] = ()) -> Frame:
    return Frame("d", 0, "p_shape", direction, confidence, 18_550.0, 18_560.0, 18_520.0, warnings)


def level(strength: float) -> QualifiedLevel:
    return QualifiedLevel("val", 18_520.0, LONG, strength, ())


def test_seed_example_absorption_80_at_val_with_an_aligned_bias() -> None:
    # spec §10: 0.30 x 80 + 0.25 x 50 + 0.20 x 62.5 = 24 + 12.5 + 12.5 = 49
    got = composite(W, LONG, [("absorption", 80.0)], level(50.0), frame(LONG, 62.5))
    assert got == pytest.approx(49.0)


def test_seed_maximum_for_absorption_alone_is_75() -> None:
    assert composite(W, LONG, [("absorption", 100.0)], level(100.0), frame(LONG, 100.0)) == 75.0


@pytest.mark.parametrize(
    ("direction", "warnings", "expected"),
    [
        (LONG, ("vah_rejection",), 24 + 12.5 + 12.5 - 10),  # warned against LONG: -10
        (SHORT, ("vah_rejection",), 24 + 12.5),  # not against SHORT; bias not aligned: no bonus
        (SHORT, ("val_rejection",), 24 + 12.5 - 10),
        (LONG, ("bullish_hook",), 24 + 12.5 + 12.5),  # hooks act on confidence, not the score
    ],
)
def test_warning_penalty(direction: Direction, warnings: tuple[str, ...], expected: float) -> None:
    f = frame(LONG, 62.5, warnings)
    assert composite(W, direction, [("absorption", 80.0)], level(50.0), f) == pytest.approx(
        expected
    )


def test_supporting_patterns_use_their_weights_and_the_score_is_clamped() -> None:
    pats = [("absorption", 100.0), ("divergence", 100.0), ("sweep", 100.0), ("initiative", 100.0)]
    assert composite(W, LONG, pats[:2], None, None) == pytest.approx(30 + 25)
    assert composite(W, LONG, pats, level(100.0), frame(LONG, 100.0)) == 100.0  # 165 clamped
    assert (
        composite(W, LONG, [("absorption", 0.0)], None, frame(LONG, 0.0, ("vah_rejection",))) == 0.0
    )


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100.0, "A+"),
        (85.0, "A+"),
        (84.99, "A"),
        (70.0, "A"),
        (69.9, "B"),
        (55.0, "B"),
        (54.9, "C"),
        (0.0, "C"),
    ],
)
def test_grades(score: float, expected: str) -> None:
    assert grade(score) == expected
    assert [g for _, g in GRADES] == ["A+", "A", "B"]


def test_sl_tp_from_the_level_and_the_value_area() -> None:
    f = frame(LONG, 62.5)  # VAH 18,560, VAL 18,520: range 40, buffer 4
    # LONG at VAL: SL = 18,520 - 4 = 18,516 (more than 4 ticks under 18,522), TP = VAH
    assert sl_tp(Risk(), LONG, 18_522.0, 18_520.0, f, 0.25) == (18_516.0, 18_560.0)
    # SHORT at VAH: SL = 18,560 + 4, TP = VAL
    assert sl_tp(Risk(), SHORT, 18_559.0, 18_560.0, f, 0.25) == (18_564.0, 18_520.0)
    # an entry right at the level's stop keeps the minimum distance: 4 ticks of 0.25
    assert sl_tp(Risk(), LONG, 18_516.5, 18_520.0, f, 0.25) == (18_515.5, 18_560.0)


@pytest.mark.parametrize(
    ("direction", "entry", "stop", "target", "reason"),
    [
        (LONG, 100.0, 95.0, 110.0, ""),  # reward 10 / risk 5 = 2
        (LONG, 100.0, 95.0, 107.5, ""),  # exactly 1.5
        (LONG, 100.0, 95.0, 107.0, "reward_risk_below_min:1.40<1.5"),
        (LONG, 100.0, 100.0, 110.0, "stop_not_beyond_entry"),
        (LONG, 100.0, 95.0, 100.0, "target_not_beyond_entry"),
        (SHORT, 100.0, 105.0, 90.0, ""),
        (SHORT, 100.0, 99.0, 90.0, "stop_not_beyond_entry"),
        (SHORT, 100.0, 105.0, 101.0, "target_not_beyond_entry"),
    ],
)
def test_rejection_reasons(
    direction: Direction, entry: float, stop: float, target: float, reason: str
) -> None:
    assert rejection(Risk(), direction, entry, stop, target) == reason
