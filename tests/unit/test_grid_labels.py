"""Row labels: one rule for the bars' footprint and the volume profile (issue 8 §2.6).
Ticks such as 1/8 and 1/64 keep every decimal; the reference is exact rational arithmetic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from of_analytics.bars import BarBuilder
from of_analytics.profile import SessionProfiler
from ofcommon.grid import tick_decimals
from ofcommon.instruments import Instrument
from ofcommon.messages import Side, Trade

T0 = int(datetime(2024, 1, 16, 15, tzinfo=UTC).timestamp()) * 1_000_000_000  # 10:00 New York


def _trade(i: int, price: float, size: float = 1.0) -> Trade:
    return Trade(T0 + i, T0 + i, price, size, Side.BUY, f"t{i}")


@pytest.mark.parametrize(
    ("tick", "ticks_at_poc"),
    [(0.125, 81), (0.015625, 641), (0.25, 19203), (0.00001, 108_123)],
)
def test_profile_poc_keeps_the_ticks_decimals(tick: float, ticks_at_poc: int) -> None:
    # Rows one tick high, so the POC label is the traded price itself.
    exact = Fraction(ticks_at_poc) * Fraction(repr(tick))
    inst = Instrument(symbol="X", group="indices", tick_size=tick, row_size=tick, session="NY_CASH")
    p = SessionProfiler(inst)
    price = float(exact)
    p.on_trade(_trade(0, price, 5.0))
    p.on_trade(_trade(1, float(exact - Fraction(repr(tick))), 1.0))
    assert Fraction(repr(p.developing_poc)) == exact
    assert Fraction(repr(p.stats().poc)) == exact


@pytest.mark.parametrize("tick", [0.125, 0.015625, 0.1, 0.00001])
def test_bar_footprint_labels_keep_the_ticks_decimals(tick: float) -> None:
    b = BarBuilder(tick, 2 * tick, composed=())
    state = b.initial()
    ticks = [8001, 8002, 8005]
    for i, k in enumerate(ticks):
        b.on_trade(state, _trade(i, float(k * Fraction(repr(tick)))))
    bar = b.partial(state)
    assert bar is not None
    expected = sorted({(k // 2) * 2 * Fraction(repr(tick)) for k in ticks})
    assert [Fraction(repr(r.price)) for r in bar.footprint] == expected


def test_tick_decimals() -> None:
    assert [tick_decimals(t) for t in (0.125, 0.015625, 0.1, 0.00001, 1.0, 50.0)] == [
        3,
        6,
        1,
        5,
        0,
        0,
    ]
    with pytest.raises(ValueError, match="tick size must be positive"):
        tick_decimals(0.0)


@pytest.mark.parametrize("tick", [0.1, 0.5, 0.25, 0.00001])
def test_bar_and_profile_put_a_half_tick_print_in_the_same_row(tick: float) -> None:
    # An off-grid print an exact half tick between two grid prices: the bar footprint and the
    # profile must agree on its row (one rule), or a profile summed from stored footprints moves.
    inst = Instrument(symbol="X", group="indices", tick_size=tick, row_size=tick, session="NY_CASH")
    prices = [
        float((Fraction(k) + Fraction(1, 2)) * Fraction(repr(tick))) for k in range(649990, 650010)
    ]
    for i, price in enumerate(prices):
        b = BarBuilder(tick, tick, composed=())
        state = b.initial()
        b.on_trade(state, _trade(i, price))
        bar = b.partial(state)
        assert bar is not None
        p = SessionProfiler(inst)
        p.on_trade(_trade(i, price))
        assert [r.price for r in bar.footprint] == [p.stats().poc], price


@pytest.mark.parametrize("tick", [0.1, 0.01, 0.25, 0.00001])
def test_an_exact_half_tick_goes_to_the_even_tick_in_every_engine(tick: float) -> None:
    # Binance spot prints on a 0.01 grid replayed on Bybit's 0.1 tick: 61833.95 is an exact half
    # tick. Its tick was decided by float noise (61833.95 / 0.1 rounded down, 61828.35 / 0.1 up);
    # the decimal price, half to even (as round() does on exact values), decides it now.
    for k in range(618320, 618350):
        exact = (Fraction(k) + Fraction(1, 2)) * Fraction(repr(tick))
        price = float(exact)
        if Fraction(repr(price)) != exact:
            continue  # the float's shortest spelling is not the half tick: not this case
        even = k if k % 2 == 0 else k + 1
        b = BarBuilder(tick, tick, composed=())
        state = b.initial()
        b.on_trade(state, _trade(k, price))
        bar = b.partial(state)
        assert bar is not None
        want = float(Fraction(even) * Fraction(repr(tick)))
        assert [r.price for r in bar.footprint] == [pytest.approx(want, rel=1e-15)], price
        inst = Instrument(
            symbol="X", group="indices", tick_size=tick, row_size=tick, session="NY_CASH"
        )
        p = SessionProfiler(inst)
        p.on_trade(_trade(k, price))
        assert p.stats().poc == pytest.approx(want, rel=1e-15), price
