"""Exhaustion (seed §8.4, §19 #17's fixes): new extremes on drying volume and fading delta over
one aligned window of ``min_bars_declining`` + 1 bars; contrarian imbalance at the extreme."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from tests.support.pattern_bars import INST, background, bar

from of_patterns import exhaustion
from of_patterns.history import point
from of_patterns.thresholds import Limits
from ofcommon.messages import Bar, Direction, FootprintRow, ImbalanceRow, Side

PRIOR = background(10)  # highs 18000.2, lows 17999.9
LIM = Limits(True, 50.0, 30.0, 15.0, 6.0, 20.0)  # median bar volume 20


def push_up(
    highs: Sequence[float] = (18000.3, 18000.5, 18000.7, 18000.9),
    volumes: Sequence[float] = (40.0, 32.0, 26.0, 20.0),
    deltas: Sequence[float] = (20.0, 12.0, 6.0, 0.0),
    last_imbalances: Sequence[ImbalanceRow] = (),
    rows: int = 6,
) -> list[Bar]:
    """Four bars up; the last has ``rows`` one-tick footprint rows up to its high."""
    out = []
    for k, (h, v, d) in enumerate(zip(highs, volumes, deltas, strict=True)):
        last = k == len(highs) - 1
        out.append(
            bar(
                10 + k,
                h - 0.3,
                h,
                h - 0.4,
                h - 0.1,
                v,
                d,
                imbalances=last_imbalances if last else (),
                rows=[FootprintRow(round(h - 0.1 * r, 1), 1.0, 1.0, 2) for r in range(rows)]
                if last
                else (),
            )
        )
    return out


def mirror(b: Bar) -> Bar:
    """Prices reflected about 18000, sides swapped."""
    return msgspec.structs.replace(
        b,
        open=36000.0 - b.open,
        high=36000.0 - b.low,
        low=36000.0 - b.high,
        close=36000.0 - b.close,
        delta=-b.delta,
        imbalances=[ImbalanceRow(36000.0 - i.price, Side(-i.side), i.ratio) for i in b.imbalances],
    )


def test_bullish_exhaustion_fires_short_at_the_last_high() -> None:
    bars = PRIOR + push_up()
    found = exhaustion.on_bar([point(b) for b in bars], INST, LIM)
    assert found is not None
    assert (found.direction, found.price, found.ts) == (
        Direction.SHORT,
        18000.9,
        bars[-1].close_ts,
    )
    assert found.details["volume_decline"] == pytest.approx(0.5)  # 40 -> 20
    assert found.details["onset_ts"] == bars[-4].open_ts


def test_bearish_exhaustion_is_the_mirror() -> None:
    bars = [mirror(b) for b in PRIOR + push_up()]
    found = exhaustion.on_bar([point(b) for b in bars], INST, LIM)
    assert found is not None
    assert (found.direction, found.price) == (Direction.LONG, 36000.0 - 18000.9)


@pytest.mark.parametrize(
    "window",
    [
        push_up(volumes=(40.0, 32.0, 34.0, 20.0)),  # volume rose in between
        push_up(volumes=(40.0, 38.0, 36.0, 34.0)),  # declined only 15 % (needs 30 %)
        push_up(volumes=(18.0, 15.0, 12.0, 10.0)),  # no effort: the push starts below the median
        push_up(deltas=(20.0, 16.0, 13.0, 11.0)),  # delta kept more than half
        push_up(deltas=(-5.0, -6.0, -7.0, -8.0)),  # the push side never led
        push_up(deltas=(7.0, 3.0, 1.0, 0.0)),  # no drive: 7 < a quarter of D = 30
        push_up(highs=(18000.3, 18000.5, 18000.5, 18000.9)),  # no new high in bar 3
        push_up(highs=(18000.2, 18000.5, 18000.7, 18000.9)),  # started inside the prior range
        push_up(last_imbalances=[ImbalanceRow(18000.6, Side.BUY, 4.0)]),  # no bid imbalance
    ],
)
def test_negatives(window: list[Bar]) -> None:
    assert exhaustion.on_bar([point(b) for b in PRIOR + window], INST, LIM) is None


def test_a_coarse_footprint_cannot_place_an_imbalance_at_the_extreme() -> None:
    """Two footprint rows for the whole bar: the requirement is not applied (it would reject a
    true exhaustion for a row that spans the bar); the bonus still counts."""
    window = push_up(last_imbalances=[ImbalanceRow(18000.6, Side.BUY, 4.0)], rows=2)
    assert exhaustion.on_bar([point(b) for b in PRIOR + window], INST, LIM) is not None


def test_contrarian_imbalance_at_the_top_adds_strength() -> None:
    plain = exhaustion.on_bar([point(b) for b in PRIOR + push_up()], INST, LIM)
    top = [ImbalanceRow(18000.8, Side.SELL, 4.0)]
    with_it = exhaustion.on_bar([point(b) for b in PRIOR + push_up(last_imbalances=top)], INST, LIM)
    assert plain is not None
    assert with_it is not None
    assert with_it.strength - plain.strength == pytest.approx(20.0)
    assert with_it.details["contrarian_imbalances"] == 1


def test_without_the_contrarian_requirement_a_buy_imbalance_does_not_block() -> None:
    inst = msgspec.structs.replace(
        INST,
        exhaustion=msgspec.structs.replace(INST.exhaustion, requires_contrarian_imbalance=False),
    )
    window = push_up(last_imbalances=[ImbalanceRow(18000.6, Side.BUY, 4.0)])
    assert exhaustion.on_bar([point(b) for b in PRIOR + window], inst, LIM) is not None


def _with_top_row(window: list[Bar], bid: float, ask: float) -> list[Bar]:
    """The last bar's row at 18000.8 (the top 30 % of 18000.5-18000.9) traded ``bid`` at the bid
    and ``ask`` at the ask; the bar also shows a buy imbalance low down, so the requirement
    applies."""
    last = window[-1]
    rows = [FootprintRow(r.price, bid, ask, 2) if r.price == 18000.8 else r for r in last.footprint]
    return [*window[:-1], msgspec.structs.replace(last, footprint=rows)]


@pytest.mark.parametrize(
    ("bid", "ask", "fires"),
    [
        (5.0, 2.0, True),  # sellers traded 2.5 x the buyers on one row at the top: the seed's test
        (4.0, 2.0, False),  # 2 x: not dominant
        (3.0, 0.0, False),  # a one-sided row is no imbalance (the seed counted it, §19 #16)
    ],
)
def test_the_seeds_contrarian_row_at_the_top(bid: float, ask: float, fires: bool) -> None:
    window = _with_top_row(
        push_up(last_imbalances=[ImbalanceRow(18000.6, Side.BUY, 4.0)]), bid, ask
    )
    found = exhaustion.on_bar([point(b) for b in PRIOR + window], INST, LIM)
    assert (found is not None) == fires
    if found is not None:
        assert found.details["contrarian_imbalances"] == 1
        # the same bar mirrored: buyers dominating one row at the bottom
        mirrored = [mirror(b) for b in PRIOR + window]
        mirrored[-1] = msgspec.structs.replace(
            mirrored[-1],
            footprint=[
                FootprintRow(round(36000.0 - r.price - 0.1, 1), r.ask_volume, r.bid_volume, 2)
                for r in window[-1].footprint
            ],
        )
        back = exhaustion.on_bar([point(b) for b in mirrored], INST, LIM)
        assert back is not None
        assert (back.direction, back.details["contrarian_imbalances"]) == (Direction.LONG, 1)


def test_the_push_must_be_driven_by_aggressors() -> None:
    """The first bar's push-side delta reaches a quarter of the delta threshold D (30 here)."""
    driven = push_up(deltas=(7.5, 3.0, 1.0, 0.0))
    found = exhaustion.on_bar([point(b) for b in PRIOR + driven], INST, LIM)
    assert found is not None
    assert found.details["drive_delta_min"] == pytest.approx(30.0 / 4)
