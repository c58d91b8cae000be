"""Delta of bars: per bar, per price row, at the bar's high and low, and cumulative per session
(reset at the instrument's session start, ofcommon.sessions) and continuous (never reset).

Delta is always buy (ask, aggressor buy) minus sell (bid, aggressor sell) volume. The session CVD
follows NinjaTrader's convention: it counts in-session trades only and resets at the session open
(the first bar inside a session not counted yet); out-of-hours flow goes into the continuous CVD
alone, and through the hours between a close and the next open the session CVD holds the value of
the last in-session trade.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ofcommon.messages import Bar, FootprintRow
from ofcommon.sessions import SessionSpec, session_bounds

__all__ = [
    "CumulativeDelta",
    "CvdState",
    "DeltaStats",
    "delta_at_extremes",
    "delta_pct",
    "horizontal_delta",
    "rows_delta_at_extremes",
]


def horizontal_delta(bar: Bar) -> list[tuple[float, float]]:
    """(row price, ask − bid) per footprint row, ascending price."""
    return [(r.price, r.ask_volume - r.bid_volume) for r in bar.footprint]


def delta_at_extremes(bar: Bar) -> tuple[float, float]:
    """(delta at the high row, delta at the low row); zeros without a footprint."""
    return rows_delta_at_extremes(bar.footprint)


def rows_delta_at_extremes(
    fp: Sequence[FootprintRow], *, ascending: bool = False
) -> tuple[float, float]:
    """``delta_at_extremes`` of a footprint (rows in any order, or ``ascending`` by price)."""
    if not fp:
        return 0.0, 0.0
    if ascending:
        top, bottom = fp[-1], fp[0]
    else:
        top = max(fp, key=lambda r: r.price)
        bottom = min(fp, key=lambda r: r.price)
    return top.ask_volume - top.bid_volume, bottom.ask_volume - bottom.bid_volume


def delta_pct(bar: Bar) -> float:
    total = bar.buy_volume + bar.sell_volume
    return bar.delta / total if total > 0 else 0.0


class CvdState(msgspec.Struct, gc=False):
    session_start: int = 0
    session_end: int = 0
    session_cvd: float = 0.0
    cvd: float = 0.0
    last_open_ts: int = -1  # bars already counted are ignored (replays, duplicate finals)
    counted_start: int = -1  # start of the session whose flow ``session_cvd`` counts


class DeltaStats(msgspec.Struct, frozen=True, array_like=True, gc=False):
    open_ts: int
    delta: float
    delta_pct: float
    delta_high: float
    delta_low: float
    session_start: int
    session_cvd: float
    cvd: float


class CumulativeDelta:
    """Cumulative delta over closed bars of one timeframe; pure over ``CvdState``."""

    __slots__ = ("spec",)

    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec

    def enter(self, state: CvdState, open_ts: int) -> None:
        """Move to the session window of a bar opening at ``open_ts`` (the session containing
        it, else the next to open); the first bar inside a new session resets ``session_cvd``
        (the bar builder calls this when a bar opens, before its first trade). Trades in
        ``[session_start, session_end)`` are in session."""
        # Bounds are looked up only when the bar leaves the current session window (cheap path).
        if not state.session_start <= open_ts < state.session_end:
            state.session_start, state.session_end = session_bounds(self.spec, open_ts)
        if state.session_start <= open_ts and state.counted_start != state.session_start:
            state.session_cvd = 0.0
            state.counted_start = state.session_start

    def on_bar(self, state: CvdState, bar: Bar) -> DeltaStats | None:
        """Fold one closed bar; None for a partial or an already counted bar."""
        if not bar.final or bar.open_ts <= state.last_open_ts:
            return None
        state.last_open_ts = bar.open_ts
        ts = bar.open_ts
        self.enter(state, ts)
        if state.session_start <= ts:  # a bar out of hours adds to the continuous CVD only
            state.session_cvd += bar.delta
        state.cvd += bar.delta
        hi, lo = delta_at_extremes(bar)
        return DeltaStats(
            ts,
            bar.delta,
            delta_pct(bar),
            hi,
            lo,
            state.counted_start,
            state.session_cvd,
            state.cvd,
        )
