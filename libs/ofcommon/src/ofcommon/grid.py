"""The price grid of an instrument: the one rule for the rows of whole ticks and their labels.
Every engine that buckets prices into rows (bar footprints, volume profiles) uses these rules.

The rule: a row ``k`` of ``ticks_per_row`` ticks covers ``[k·row, (k+1)·row)`` and is labelled
by its lower edge, rounded to the decimals of the tick's shortest decimal spelling (``repr``). A
tick of 0.125 keeps three decimals (10.125, not 10.12), 1/64 = 0.015625 keeps six, 0.1 keeps one,
so the label is the exact decimal price without float noise (1850.0, not 1850.0000000000002).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["NEAR_HALF", "half_tick", "row_label", "tick_decimals", "ticks_of"]


def tick_decimals(tick_size: float) -> int:
    """Decimal places of ``tick_size`` as written (0.125 → 3, 0.00001 → 5, 5.0 → 0)."""
    if not tick_size > 0:
        raise ValueError(f"tick size must be positive, got {tick_size!r}")
    exp = Decimal(repr(tick_size)).normalize().as_tuple().exponent
    # normalize() of a whole number may give a positive exponent (5E+1): no decimals then.
    return max(0, -exp) if isinstance(exp, int) else 0


# A quotient this close to a half tick is decided on the decimal spellings, not the float one.
NEAR_HALF = 0.5 - 1e-6


def ticks_of(price: float, tick_size: float) -> int:
    """``price`` in whole ticks, nearest first: float noise (18500.300000000003) never moves a row.
    An exact half tick (61833.95 on a 0.1 tick: an off-grid print) goes to the even tick of the
    decimal price and tick as written (``repr``), half to even as ``round`` does on exact values;
    the float quotient alone would decide it by noise. One rule for every engine, so a bar
    footprint and a profile put such a print in the same row, and profile rows summed from stored
    footprints agree."""
    q = price / tick_size
    t = round(q)
    if abs(q - t) < NEAR_HALF:
        return t
    return half_tick(price, tick_size)


def half_tick(price: float, tick_size: float) -> int:
    """The slow path of ``ticks_of``: nearest tick of the decimal price, half to even."""
    q = Decimal(repr(price)) / Decimal(repr(tick_size))
    return int(q.to_integral_value(ROUND_HALF_EVEN))


def row_label(row: int, row_price: float, decimals: int) -> float:
    """The label (lower edge) of row ``row``, rows ``row_price`` apart, at ``decimals`` places."""
    return round(row * row_price, decimals)
