"""Sweep (seed §8.3 with §19 #3, #19 fixed): several levels taken by trades, not cancellations,
within ``max_time_ms`` of event time; thin-book confirmation on the swept side."""

from __future__ import annotations

import msgspec
import pytest
from tests.support.pattern_bars import INST, MIN, T0, book, take

from of_patterns import sweep
from of_patterns.found import Found
from of_patterns.thresholds import Limits
from ofcommon.messages import Consumption, Direction, Side

MS = 1_000_000
# NAS100USDT: 3 levels in 2000 ms; at most 15 per level; at least 0.25 x thin 8 x 3 = 6 in all
LIM = Limits(True, 50.0, 30.0, 15.0, 6.0, 20.0)
START = T0 + 30 * MIN


def run(events: list[Consumption], thin: tuple[int, int] = (0, 0)) -> list[Found]:
    state = sweep.SweepState()
    out = [sweep.on_consumption(state, c, thin, INST, LIM) for c in events]
    return [f for f in out if f is not None]


def burst(
    side: Side = Side.BUY, sizes: tuple[float, ...] = (2.0, 2.5, 3.0), gap_ms: int = 40
) -> list[Consumption]:
    step = 0.1 if side == Side.BUY else -0.1
    return [
        take(START + k * gap_ms * MS, side, round(18000.0 + k * step, 1), size)
        for k, size in enumerate(sizes)
    ]


def test_asks_taken_is_a_long_sweep() -> None:
    [found] = run(burst())
    assert (found.direction, found.price) == (Direction.LONG, 18000.2)
    assert found.ts == START + 80 * MS + 1_000_000_000  # the last take + the 1 s matching window
    assert found.details["levels_swept"] == 3
    assert found.details["volume"] == pytest.approx(7.5)


def test_bids_taken_is_a_short_sweep() -> None:
    [found] = run(burst(Side.SELL))
    assert (found.direction, found.price) == (Direction.SHORT, 17999.8)


@pytest.mark.parametrize(
    "events",
    [
        burst(sizes=(2.0, 2.5)),  # two levels
        burst(gap_ms=1100),  # 2200 ms from the first to the last level
        burst(sizes=(20.0, 20.0, 20.0)),  # 20 per level: walls, not a thin book
        burst(sizes=(1.0, 1.5, 2.0)),  # 4.5 in all: the background's small prints
        [msgspec.structs.replace(c, traded=0.0, cancelled=c.removed) for c in burst()],  # pulled
        [*burst(sizes=(2.0, 2.5)), take(START + 80 * MS, Side.SELL, 17999.9, 3.0)],  # mixed sides
    ],
)
def test_negatives(events: list[Consumption]) -> None:
    assert run(events) == []


def test_one_signal_per_burst() -> None:
    events = burst(sizes=(2.0, 2.5, 3.0, 2.0, 2.0, 2.0), gap_ms=20)
    assert len(run(events)) == 1


def test_thin_book_on_the_swept_side_confirms() -> None:
    [plain] = run(burst())
    [thin] = run(burst(), thin=(2, 0))
    [other_side] = run(burst(), thin=(0, 2))
    assert thin.strength - plain.strength == pytest.approx(30.0)
    assert other_side.strength == plain.strength
    assert thin.details["thin_levels"] == 2


def test_thin_sides_of_the_book() -> None:
    stats = book(START, 17999.9, 18000.0, thin=[18000.1, 18000.3, 17999.5])
    assert sweep.thin_sides(stats) == (2, 1)
    assert sweep.thin_sides(msgspec.structs.replace(stats, valid=False)) == (0, 0)
