"""Initiative: the five criteria of seed §8.2, with the average excluding the current bar and a
strength that no single term dominates (§19 #18)."""

from __future__ import annotations

import pytest
from tests.support.pattern_bars import INST, background, bar

from of_patterns import initiative
from of_patterns.history import point
from of_patterns.thresholds import Limits
from ofcommon.messages import Direction, ImbalanceRow, Side

LIM = Limits(True, 50.0, 30.0, 15.0, 6.0, 20.0)  # NAS100USDT: delta 30, accel 1.5, body 3 ticks
HISTORY = [point(b) for b in background(20)]  # volume 20 each: the average is 20


@pytest.mark.parametrize(
    ("volume", "delta", "o", "c", "expected"),
    [
        (60.0, 40.0, 18000.0, 18000.5, Direction.LONG),  # every criterion met
        (60.0, -40.0, 18000.5, 18000.0, Direction.SHORT),
        (60.0, 25.0, 18000.0, 18000.5, None),  # (1) |delta| < 30
        (29.0, 29.0, 18000.0, 18000.5, None),  # (2) 29 / 20 < 1.5 (and delta short)
        (60.0, 40.0, 18000.0, 18000.2, None),  # (3) body 2 ticks < 3
        (60.0, 40.0, 18000.5, 18000.0, None),  # (4) delta up, body down
        (30.0, 30.0, 18000.0, 18000.3, Direction.LONG),  # exactly at every threshold
    ],
)
def test_five_criteria(
    volume: float, delta: float, o: float, c: float, expected: Direction | None
) -> None:
    b = bar(20, o, max(o, c) + 0.1, min(o, c) - 0.1, c, volume, delta)
    found = initiative.on_bar(HISTORY, b, INST, LIM)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.direction == expected
    assert (found.price, found.ts) == (c, b.close_ts)
    assert found.details["avg_volume"] == 20.0


def test_average_excludes_the_current_bar() -> None:
    """One prior bar of 20, a current bar of 31: 31 / 20 = 1.55 passes; the seed's average with
    the current bar in it, (20 + 31) / 2 = 25.5, gives 1.22 and would not."""
    b = bar(1, 18000.0, 18000.5, 17999.9, 18000.4, 31.0, 31.0)
    found = initiative.on_bar(HISTORY[-1:], b, INST, LIM)
    assert found is not None
    assert found.details["vol_acceleration"] == pytest.approx(1.55)


def test_seed_golden_vector_initiative() -> None:
    """Seed §20 #4: ten bars of volume 50 (delta 0), then volume 200, D = +140, body 7.0:
    BUY at the close 18517. The seed's strength (100, saturated by body x 5) is not kept."""
    history = [point(bar(k, 18510.0, 18511.0, 18509.0, 18510.0, 50.0, 0.0)) for k in range(10)]
    b = bar(10, 18510.0, 18518.0, 18509.5, 18517.0, 200.0, 140.0)
    found = initiative.on_bar(history, b, INST, LIM)
    assert found is not None
    assert (found.direction, found.price) == (Direction.LONG, 18517.0)
    # delta 140/60, accel 4/3, body 70/6 ticks all saturate; no imbalances: 3 x 25
    assert found.strength == pytest.approx(75.0)


def test_no_single_term_dominates_the_strength() -> None:
    at_threshold = bar(20, 18000.0, 18000.4, 17999.9, 18000.3, 30.0, 30.0)
    huge_body = bar(20, 18000.0, 18030.1, 17999.9, 18030.0, 30.0, 30.0)
    base = initiative.on_bar(HISTORY, at_threshold, INST, LIM)
    big = initiative.on_bar(HISTORY, huge_body, INST, LIM)
    assert base is not None
    assert big is not None
    # each term is worth at most 25 and half of it at its threshold: 3 x 12.5 + 0 imbalances
    assert base.strength == pytest.approx(37.5)
    assert big.strength == pytest.approx(50.0)  # a 300-tick body adds only 12.5


def test_same_side_imbalances_add_to_the_strength() -> None:
    rows = [ImbalanceRow(18000.0 + 0.1 * k, Side.BUY, 4.0) for k in range(3)]
    plain = bar(20, 18000.0, 18000.4, 17999.9, 18000.3, 30.0, 30.0)
    stacked = bar(20, 18000.0, 18000.4, 17999.9, 18000.3, 30.0, 30.0, imbalances=rows)
    a = initiative.on_bar(HISTORY, plain, INST, LIM)
    b = initiative.on_bar(HISTORY, stacked, INST, LIM)
    assert a is not None
    assert b is not None
    assert b.strength - a.strength == pytest.approx(25.0)
    assert b.details["imbalance_rows"] == 3
