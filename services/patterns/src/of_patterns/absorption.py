"""Absorption: heavy aggression into a level that does not give way (seed §8.1, landscape §2.7).

Three methods; a bar yields at most one signal (the level method wins over the mismatch):

* (a) *delta/close mismatch*: a closed bar with |delta| >= M whose body goes against its delta
  (positive delta, red bar: buyers absorbed, SHORT at the high; the mirror LONG at the low). A doji
  never fires, for either sign (the seed fired on a doji with negative delta only).
* (b) *level*: the bar's footprint row with the most one-sided aggressive volume v >= M, with price
  at most ``max_price_displacement_ticks`` beyond that row in the aggressor's direction, is an
  attempt. Attempts at the same level and side (within the displacement, and no bar's extreme
  further than the displacement beyond the first attempt's: the level held), less than
  3 x ``rolling_window_seconds`` of event time apart, accumulate; ``min_attempts`` of them fire.
* (c) *book*: consumption events at one level and aggressor side, within
  ``rolling_window_seconds``: traded (not cancelled) size >= M while the level refilled at least
  ``min_attempts`` times. Decision time: the completing event's time + ``found.SETTLE_NS``.

M is the absorption volume threshold of ``thresholds.Limits``. Buyers absorbed -> SHORT.
"""

from __future__ import annotations

import itertools

import msgspec

from of_patterns.found import SETTLE_NS, Found, clamp01
from of_patterns.thresholds import Limits
from ofcommon.instruments import Instrument
from ofcommon.messages import Bar, Consumption, Direction, Side

_NS = 1_000_000_000


class Attempt(msgspec.Struct, array_like=True, gc=False):
    side: int
    price: float
    volume: float
    count: int
    first_ts: int
    last_ts: int
    extreme: float  # the first attempt's high (buy aggressors) or low (sell aggressors)


class Hit(msgspec.Struct, array_like=True, gc=False):
    ts: int
    traded: float
    refilled: bool


class Level(msgspec.Struct, array_like=True, gc=False):
    side: int
    price: float
    hits: list[Hit] = msgspec.field(default_factory=list)
    fired_ts: int = 0


class AbsorptionState(msgspec.Struct):
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    levels: list[Level] = msgspec.field(default_factory=list)


def _direction(aggressor: int) -> Direction:
    return Direction.SHORT if aggressor == Side.BUY else Direction.LONG


def _row_height(bar: Bar, tick: float) -> float:
    prices = sorted(r.price for r in bar.footprint)
    steps = [b - a for a, b in itertools.pairwise(prices) if b - a > 0.5 * tick]
    return min(steps) if steps else tick


def on_bar(state: AbsorptionState, bar: Bar, inst: Instrument, lim: Limits) -> Found | None:
    """Methods (b), then (a), on a closed bar."""
    expiry = int(3 * inst.absorption.rolling_window_seconds * _NS)
    state.attempts = [a for a in state.attempts if bar.close_ts - a.last_ts <= expiry]
    found = _level(state, bar, inst, lim) if bar.footprint else None
    return found if found is not None else _mismatch(bar, inst, lim)


def _mismatch(bar: Bar, inst: Instrument, lim: Limits) -> Found | None:
    d, m = bar.delta, lim.absorption_volume
    if abs(d) < m:
        return None
    if d > 0 and bar.close < bar.open:
        direction, price = Direction.SHORT, bar.high
    elif d < 0 and bar.close > bar.open:
        direction, price = Direction.LONG, bar.low
    else:
        return None
    return Found(
        "absorption",
        direction,
        price,
        50.0 + 50.0 * clamp01(abs(d) / m - 1.0),
        bar.close_ts,
        {
            "method": "delta_close_mismatch",
            "delta": d,
            "threshold": m,
            "body_ticks": round((bar.close - bar.open) / inst.tick_size, 2),
        },
    )


def _level(state: AbsorptionState, bar: Bar, inst: Instrument, lim: Limits) -> Found | None:
    p, tick, m = inst.absorption, inst.tick_size, lim.absorption_volume
    best = max(bar.footprint, key=lambda r: max(r.ask_volume, r.bid_volume))
    aggressor = Side.BUY if best.ask_volume >= best.bid_volume else Side.SELL
    volume = best.ask_volume if aggressor == Side.BUY else best.bid_volume
    if volume < m:
        return None
    top = best.price + _row_height(bar, tick) - tick
    beyond = (bar.high - top if aggressor == Side.BUY else best.price - bar.low) / tick
    if beyond > p.max_price_displacement_ticks + 1e-9:
        return None
    near = p.max_price_displacement_ticks * tick + 1e-9 * tick
    extreme = bar.high if aggressor == Side.BUY else bar.low
    attempt = next(
        (
            a
            for a in state.attempts
            if a.side == aggressor
            and abs(a.price - best.price) <= near
            # the level held: no attempt got further than the displacement beyond the first
            and aggressor * (extreme - a.extreme) <= near
        ),
        None,
    )
    if attempt is None:
        attempt = Attempt(aggressor, best.price, 0.0, 0, bar.open_ts, bar.close_ts, extreme)
        state.attempts.append(attempt)
    attempt.volume += volume
    attempt.count += 1
    attempt.last_ts = bar.close_ts
    if attempt.count < p.min_attempts:
        return None
    state.attempts.remove(attempt)
    strength = 40.0 * clamp01(attempt.volume / (2.0 * m * attempt.count)) + 30.0 * clamp01(
        attempt.count / (2.0 * p.min_attempts)
    )
    strength += 30.0 * (1.0 - clamp01(beyond / (p.max_price_displacement_ticks + 1.0)))
    return Found(
        "absorption",
        _direction(aggressor),
        best.price,
        strength,
        bar.close_ts,
        {
            "method": "level",
            "aggressive_volume": attempt.volume,
            "attempts": attempt.count,
            "threshold": m,
            "displacement_ticks": round(max(beyond, 0.0), 2),
            "aggressor": "buy" if aggressor == Side.BUY else "sell",
            "onset_ts": attempt.first_ts,
        },
    )


def on_consumption(
    state: AbsorptionState, c: Consumption, inst: Instrument, lim: Limits
) -> Found | None:
    """Method (c): the book shows the level refilling while aggression trades into it."""
    if c.traded <= 0.0:
        return None
    p, m = inst.absorption, lim.absorption_volume
    window = int(p.rolling_window_seconds * _NS)
    state.levels = [lv for lv in state.levels if lv.hits and c.ts_event - lv.hits[-1].ts <= window]
    level = next((lv for lv in state.levels if lv.side == c.side and lv.price == c.price), None)
    if level is None:
        level = Level(int(c.side), c.price)
        state.levels.append(level)
    level.hits = [h for h in level.hits if c.ts_event - h.ts <= window]
    level.hits.append(Hit(c.ts_event, c.traded, c.refilled))
    traded = sum(h.traded for h in level.hits)
    refills = sum(1 for h in level.hits if h.refilled)
    if traded < m or refills < p.min_attempts or c.ts_event - level.fired_ts <= window:
        return None
    level.fired_ts = c.ts_event
    onset = level.hits[0].ts
    level.hits = []
    return Found(
        "absorption",
        _direction(c.side),
        c.price,
        50.0 * clamp01(traded / (2.0 * m)) + 50.0 * clamp01(refills / (4.0 * p.min_attempts)),
        c.ts_event + SETTLE_NS,
        {
            "method": "book",
            "traded": traded,
            "refills": refills,
            "threshold": m,
            "aggressor": "buy" if c.side == Side.BUY else "sell",
            "onset_ts": onset,
        },
    )
