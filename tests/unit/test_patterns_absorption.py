"""Absorption's three methods (seed §8.1 with §19's fixes), table-driven: the delta/close mismatch,
the level held over repeated attempts, and the book's traded-and-refilled level."""

from __future__ import annotations

import msgspec
import pytest
from tests.support.pattern_bars import INST, MIN, T0, S, bar, take

from of_patterns import absorption
from of_patterns.thresholds import Limits
from ofcommon.messages import Bar, Direction, FootprintRow, Side

M = 50.0  # NAS100USDT's min_aggressive_volume (fixed)
LIM = Limits(True, M, 30.0, 15.0, 6.0, 20.0)


@pytest.mark.parametrize(
    ("delta", "o", "c", "expected"),
    [
        (60.0, 18000.5, 18000.0, (Direction.SHORT, 18001.0)),  # buyers absorbed: at the high
        (-60.0, 18000.0, 18000.5, (Direction.LONG, 17999.5)),  # sellers absorbed: at the low
        (60.0, 18000.2, 18000.2, None),  # a doji never fires (the seed fired for D < 0)
        (-60.0, 18000.2, 18000.2, None),
        (40.0, 18000.5, 18000.0, None),  # |delta| below M
        (60.0, 18000.0, 18000.5, None),  # delta and body agree: no mismatch
        (-60.0, 18000.5, 18000.0, None),
    ],
)
def test_delta_close_mismatch(
    delta: float, o: float, c: float, expected: tuple[Direction, float] | None
) -> None:
    b = bar(0, o, 18001.0, 17999.5, c, 80.0, delta)
    found = absorption.on_bar(absorption.AbsorptionState(), b, INST, LIM)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.direction, found.price) == expected
    assert found.ts == b.close_ts  # decided at the close, never the open
    assert found.details["method"] == "delta_close_mismatch"
    # strength: 50 at M, 100 at 2 M, linear between: |60| / 50 -> 50 + 50 * 0.2
    assert found.strength == pytest.approx(60.0)


def test_seed_golden_vector_absorption() -> None:
    """Seed §20 #3 (NAS100, M = 50): O 18500 H 18502 L 18498 C 18499, D = +100 -> SELL at
    18502. The seed's strength (|D|/M x 40 = 80) is not kept: ours is 100 at 2 M."""
    b = bar(0, 18500.0, 18502.0, 18498.0, 18499.0, 150.0, 100.0)
    found = absorption.on_bar(absorption.AbsorptionState(), b, INST, LIM)
    assert found is not None
    assert (found.direction, found.price, found.strength) == (Direction.SHORT, 18502.0, 100.0)


def _attempt(i: int, high: float, ask: float = 60.0) -> Bar:
    # Buyers lift the ask at the 18000.0 row; the bar closes green, so the mismatch cannot fire.
    rows = [
        FootprintRow(17999.9, 5.0, 2.0, 3),
        FootprintRow(18000.0, 4.0, ask, 20),
        FootprintRow(18000.1, 1.0, 1.0, 2),
    ]
    return bar(i, 17999.9, high, 17999.9, 18000.0, ask + 13.0, ask - 7.0, rows=rows)


@pytest.mark.parametrize(
    ("bars", "fires"),
    [
        ([(0, 18000.1), (1, 18000.2)], True),  # two attempts, price at most 2 ticks beyond
        ([(0, 18000.1)], False),  # one attempt is not enough (min_attempts = 2)
        ([(0, 18000.1), (1, 18000.4)], False),  # 4 ticks beyond the row: the level gave way
        ([(0, 18000.1), (3, 18000.1)], False),  # 3 minutes apart: beyond 3 x 30 s
        ([(0, 18000.1), (1, 18000.1, 45.0)], False),  # the second attempt is below M
    ],
)
def test_level_absorption(bars: list[tuple[float, ...]], fires: bool) -> None:
    state = absorption.AbsorptionState()
    found = None
    for spec in bars:
        b = _attempt(int(spec[0]), *spec[1:])
        found = absorption.on_bar(state, b, INST, LIM)
    if not fires:
        assert found is None
        return
    assert found is not None
    assert found.direction == Direction.SHORT  # buyers absorbed
    assert found.price == 18000.0
    assert found.ts == T0 + 2 * MIN
    assert found.details["attempts"] == 2
    assert found.details["aggressive_volume"] == 120.0
    assert found.details["onset_ts"] == T0


def test_level_absorption_needs_the_level_to_hold_across_attempts() -> None:
    """A drive that hits one row per bar but makes progress (new highs beyond the first attempt's
    by more than the displacement) is initiative, not absorption."""
    state = absorption.AbsorptionState()
    first = _attempt(0, 18000.1)
    rows = [FootprintRow(18000.2, 4.0, 60.0, 20)]
    second = bar(1, 18000.1, 18000.4, 18000.1, 18000.3, 64.0, 56.0, rows=rows)
    assert absorption.on_bar(state, first, INST, LIM) is None
    assert absorption.on_bar(state, second, INST, LIM) is None


@pytest.mark.parametrize(
    ("hits", "fires"),
    [
        ([(0, 20.0, True), (5, 20.0, True), (10, 15.0, False)], True),  # 55 traded, 2 refills
        ([(0, 20.0, True), (5, 20.0, False), (10, 15.0, False)], False),  # 1 refill
        ([(0, 20.0, True), (5, 20.0, True)], False),  # 40 traded < M
        ([(0, 20.0, True), (20, 20.0, True), (40, 15.0, False)], False),  # spread over 40 s
    ],
)
def test_book_absorption(hits: list[tuple[int, float, bool]], fires: bool) -> None:
    state = absorption.AbsorptionState()
    found = None
    for sec, size, refilled in hits:
        c = take(T0 + sec * S, Side.SELL, 17999.0, size, refilled=refilled)
        found = absorption.on_consumption(state, c, INST, LIM)
    if not fires:
        assert found is None
        return
    assert found is not None
    assert (found.direction, found.price) == (Direction.LONG, 17999.0)  # sellers absorbed
    assert found.ts == T0 + 10 * S + S  # the completing event + analytics' 1 s matching window
    assert found.details["traded"] == 55.0
    assert found.details["refills"] == 2


def test_cancelled_size_is_not_absorption() -> None:
    state = absorption.AbsorptionState()
    for sec in (0, 1, 2, 3):
        c = take(T0 + sec * S, Side.SELL, 17999.0, 30.0, refilled=True)
        pulled = msgspec.structs.replace(c, traded=0.0, cancelled=30.0)
        assert absorption.on_consumption(state, pulled, INST, LIM) is None
