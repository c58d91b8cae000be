"""Volume profiles per session and composite: POC, value area, HVN/LVN, shape, naked POCs.
Pure event-time code: trades in, ``ProfileUpdate`` messages out; no I/O and no clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from of_analytics.state import ClosedSessionState, NakedPocState, ProfilerState, SessionState
from ofcommon.grid import NEAR_HALF, half_tick, row_label, tick_decimals, ticks_of
from ofcommon.instruments import Instrument, ProfileParams
from ofcommon.messages import ProfileUpdate, SizeKind, Trade
from ofcommon.sessions import SessionSpec, session_bounds, session_date

# Definitions (the professional ones by default, the seed's §4 rules as named modes):
#
# * Rows. A price maps to whole ticks first (``ofcommon.grid.ticks_of``: 18500.300000000003 is
#   tick 185003, an exact half tick goes to the even one), then to row ``ticks // ticks_per_row``:
#   row k covers [k·row, (k+1)·row) and is labelled by its lower edge. Rows are integers
#   throughout, so no float key ever splits one row in two.
# * Rows are dense between the session's low and high: a price inside the range that never traded is
#   a row of volume 0. The value area and the shape therefore work on price distance, not on the
#   index of traded levels (the seed's §19.22 defect). ``ValueAreaMode.SEED`` keeps the seed's
#   sparse levels for compatibility.
# * POC = the row of greatest volume. Ties (``PocTieRule.MIDPOINT``, Linnsoft/DVATool chain): the
#   tied row nearest the midpoint of the profile's range; if two are equally near, the one on the
#   side of the midpoint with more volume; if still equal, the lower. The seed mode takes the
#   lowest.
# * Value area (default 70 %, ``ValueAreaMode.TWO_ROW``, Dalton/CBOT): from the POC, compare the sum
#   of the next two rows above with the next two below and add the larger pair; a tie adds the upper
#   pair (Dalton, Linnsoft A and DVATool agree); one exhausted side means the other side is added;
#   stop once the area holds the target. ``ONE_ROW`` is the same with single rows; ``SEED`` is the
#   seed's one-row rule on traded levels only, ties up, lowest-price POC (its target is the caller's
#   ``value_area_pct``; ``ProfileConfig.seed()`` gives the seed's 68 %).
# * HVN/LVN (``NodeMode.SMOOTHED``): the dense profile is smoothed by a centred moving average of
#   ``smooth_rows`` rows; an HVN is a row whose smoothed volume is the greatest within
#   ±``node_window`` rows and above ``hvn_min_ratio`` × the mean; an LVN is the mirror (least
#   within the window, strictly below a higher row on each side) and below ``lvn_max_ratio`` ×
#   the mean. The test runs on plateaus (runs of equal smoothed rows, the window counted from
#   their ends), so a flat top or a flat or empty valley of any width is one node, reported at
#   its middle row (the lower middle of an even run). ``NodeMode.SEED`` is the seed's σ rule for
#   LVNs and no HVNs.
# * Single prints: rows covered by the price range of exactly one TPO period (``period_ns``, 30 min
#   from the session start) when the session has at least two periods.
# * Shape: ``poc_pct`` = (POC − low) / (high − low) by price. Double distribution first (≥ 10 rows):
#   the peaks of the lower and upper halves both above 1.5 × the mean traded row, more than 2
#   rows apart, with a row between them below half the smaller peak; else P above 0.65, b below
#   0.35, else D.
# * Sessions: the instrument's registry session in its zone (``ofcommon.sessions``, DST-correct).
#   Only trades inside [open, close) build the profile; a trade or ``on_time`` at or past the close
#   finalises it (``final=True``, ``ts_event`` = the close). Trades before the open are counted in
#   ``out_of_hours``, also when they arrive after the session's first trade; trades of an already
#   closed session are counted in ``late`` and not folded in.
# * Composite ``composite:N`` = the current session plus the N − 1 sessions closed before it.
# * Naked POC: a closed session's final POC row, until a later trade (of the profiled size kind,
#   in or out of hours) prints in that row. A switch to real volume keeps them: they are prices.
# * Size kinds: a histogram counts one ``SizeKind``, named on every update (``volume_kind``).
#   An engine built for REAL ignores TICKS trades (quote counts, not volume) and counts them in
#   ``ignored``; one built for TICKS is the mirror. The stage's engine follows the trades
#   (``size_kind=None``): a tick-volume profile (TICKS, one count per quote change) for a
#   quote-only instrument (MT5 FX and CFDs), until the first real print, which switches it to real
#   volume for good: the tick counts of the open session and of the closed sessions kept for the
#   composite are then dropped, since a histogram never mixes the two. Zero-size prints are
#   ignored (they would create an empty row that shifts the range and the POC ties).
# * Cost: ``on_trade`` is O(1) (dict add, incremental POC candidates); the value area, nodes and
#   shape are computed in O(rows) only when an update is requested, at the caller's rate.

__all__ = [
    "NakedPoc",
    "NodeMode",
    "PocTieRule",
    "ProfileConfig",
    "ProfileStats",
    "SessionProfiler",
    "ValueAreaMode",
    "VolumeProfile",
    "compute_stats",
    "poc_index",
    "row_of",
    "value_area",
]

# Sums of many floats land a few ulps off the exact value; a relative slack far below any real
# volume keeps an area that holds exactly 70 % from being extended by one more step.
_REL_EPS: Final = 1e-12
_NS_PER_MIN: Final = 60_000_000_000


class ValueAreaMode(StrEnum):
    TWO_ROW = "two_row"  # Dalton/CBOT: pairs of rows, ties up (default)
    ONE_ROW = "one_row"  # one row at a time, ties up (py-market-profile and many scripts)
    SEED = "seed"  # the seed's §4: one row over traded levels only, lowest-price POC, ties up


class PocTieRule(StrEnum):
    MIDPOINT = "midpoint"  # nearest the range midpoint, then heavier side, then lower (default)
    LOWEST = "lowest"  # the seed's numpy argmax


class NodeMode(StrEnum):
    SMOOTHED = "smoothed"  # local extrema of the smoothed profile (default)
    SEED = "seed"  # the seed's LVN σ rule on traded levels; no HVNs


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """Profile parameters; the defaults are the professional definitions (module docstring)."""

    value_area_pct: float = 0.70
    va_mode: ValueAreaMode = ValueAreaMode.TWO_ROW
    poc_tie: PocTieRule = PocTieRule.MIDPOINT
    node_mode: NodeMode = NodeMode.SMOOTHED
    smooth_rows: int = 3
    node_window: int = 2
    hvn_min_ratio: float = 1.0
    lvn_max_ratio: float = 0.5
    lvn_stddev_factor: float = 1.5
    period_ns: int = 30 * _NS_PER_MIN
    composite_sessions: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.value_area_pct <= 1.0:
            raise ValueError(f"value_area_pct must be in (0, 1], got {self.value_area_pct}")
        if self.smooth_rows < 1 or self.smooth_rows % 2 == 0:
            raise ValueError(f"smooth_rows must be a positive odd number, got {self.smooth_rows}")
        if self.node_window < 1 or self.period_ns <= 0 or self.composite_sessions < 1:
            raise ValueError("node_window, period_ns and composite_sessions must be positive")

    @classmethod
    def from_registry(cls, params: ProfileParams) -> ProfileConfig:
        """The engine's rules with the instrument's registry ``profile`` settings applied."""
        cfg = cls(
            value_area_pct=params.value_area_pct,
            node_mode=NodeMode.SEED if params.nodes == "seed" else NodeMode.SMOOTHED,
            composite_sessions=params.merge_max_days,
        )
        if params.lvn_stddev_factor is None:
            return cfg
        return dataclasses.replace(cfg, lvn_stddev_factor=params.lvn_stddev_factor)

    @classmethod
    def seed(cls, value_area_pct: float = 0.68, lvn_stddev_factor: float = 1.5) -> ProfileConfig:
        """The seed engine's rules (§4): 68 %, one row over traded levels, ties up, σ LVNs."""
        return cls(
            value_area_pct=value_area_pct,
            va_mode=ValueAreaMode.SEED,
            poc_tie=PocTieRule.LOWEST,
            node_mode=NodeMode.SEED,
            lvn_stddev_factor=lvn_stddev_factor,
        )


def row_of(price: float, tick_size: float, ticks_per_row: int) -> int:
    """The row index of ``price``: whole ticks first, so float noise never changes the row."""
    return ticks_of(price, tick_size) // ticks_per_row


def _decimals(tick_size: float) -> int:
    # Row labels follow the one rule of ofcommon.grid (a tick of 0.125 keeps three decimals).
    return tick_decimals(tick_size)


# --- the pure computations -------------------------------------------------------------------


def poc_index(vols: Sequence[float], rule: PocTieRule = PocTieRule.MIDPOINT) -> int:
    """Index of the POC in ``vols`` (dense rows, ascending price); -1 if empty."""
    if not vols:
        return -1
    top = max(vols)
    tied = [i for i, v in enumerate(vols) if v == top]
    if len(tied) == 1 or rule is PocTieRule.LOWEST:
        return tied[0]
    return _nearest_mid(vols, tied)


def _nearest_mid(vols: Sequence[float], tied: Sequence[int]) -> int:
    # Distances are doubled so the midpoint of an even range stays an integer.
    mid2 = len(vols) - 1
    best = min(abs(2 * i - mid2) for i in tied)
    near = [i for i in tied if abs(2 * i - mid2) == best]
    if len(near) == 1:
        return near[0]
    lo, hi = near  # one each side of the midpoint, at equal distance
    below = sum(v for i, v in enumerate(vols) if 2 * i < mid2)
    above = sum(v for i, v in enumerate(vols) if 2 * i > mid2)
    return hi if above > below else lo


def value_area(vols: Sequence[float], poc: int, pct: float, step: int) -> tuple[int, int]:
    """Indices (low, high) of the value area grown from ``poc`` by ``step`` rows at a time.

    The side with the larger sum of its next ``step`` rows is added; a tie adds the upper side;
    an exhausted side lets the other be added. Stops once the area holds ``pct`` of the volume.
    """
    n = len(vols)
    total = math.fsum(vols)
    target = pct * total * (1.0 - _REL_EPS)
    lo = hi = poc
    acc = vols[poc]
    while acc < target and (lo > 0 or hi < n - 1):
        up = vols[hi + 1 : hi + 1 + step]
        down = vols[max(0, lo - step) : lo]
        up_sum = math.fsum(up)
        down_sum = math.fsum(down)
        if up and (not down or up_sum >= down_sum):
            hi += len(up)
            acc += up_sum
        else:
            lo -= len(down)
            acc += down_sum
    return lo, hi


def _smooth(vols: Sequence[float], width: int) -> list[float]:
    h = width // 2
    n = len(vols)
    fsum = math.fsum
    # Interior windows all have ``width`` rows; only the edges are shorter.
    return [
        fsum(vols[i - h : i + h + 1]) / width
        if h <= i < n - h
        else fsum(vols[max(0, i - h) : i + h + 1]) / (min(n, i + h + 1) - max(0, i - h))
        for i in range(n)
    ]


def _runs(s: Sequence[float]) -> list[tuple[int, int]]:
    """(first, last) index of every run of equal values in ``s``."""
    out: list[tuple[int, int]] = []
    first = 0
    for i in range(1, len(s) + 1):
        if i == len(s) or s[i] != s[first]:
            out.append((first, i - 1))
            first = i
    return out


def _nodes_smoothed(vols: Sequence[float], cfg: ProfileConfig) -> tuple[list[int], list[int]]:
    n = len(vols)
    if n < 3:
        return [], []
    s = _smooth(vols, cfg.smooth_rows)
    mean = math.fsum(s) / n
    hvn_floor = cfg.hvn_min_ratio * mean
    lvn_ceiling = cfg.lvn_max_ratio * mean
    k = cfg.node_window
    hvn: list[int] = []
    lvn: list[int] = []
    # The extremum test runs on plateaus (runs of equal smoothed rows), their window counted from
    # their ends: a flat or empty valley wider than the window is still one LVN, at its middle.
    # The cheap threshold tests come first: this runs on every developing profile, once a second
    # of event time per instrument.
    for first, last in _runs(s):
        v = s[first]
        high, low = v > hvn_floor, v < lvn_ceiling
        if not (high or low):
            continue
        left = s[max(0, first - k) : first]
        right = s[last + 1 : last + 1 + k]
        # Strict against the left and loose against the right: equal extremes within one window
        # count once, at the first.
        if high and (not left or max(left) < v) and (not right or max(right) <= v):
            hvn.append((first + last) // 2)
        if low and left and right and min(left) > v and min(right) >= v:
            lvn.append((first + last) // 2)
    return hvn, lvn


def _lvn_seed(vols: Sequence[float], factor: float) -> list[int]:
    n = len(vols)
    if n < 5:
        return []
    mean = math.fsum(vols) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vols) / n)
    threshold = max(mean - factor * std, 0.2 * mean)
    return [
        i
        for i in range(1, n - 1)
        if vols[i] < vols[i - 1] and vols[i] < vols[i + 1] and vols[i] < threshold
    ]


def _shape(vols: Sequence[float], poc: int) -> tuple[str, float]:
    n = len(vols)
    poc_pct = poc / (n - 1) if n > 1 else 0.5
    if n >= 10:
        mid = n // 2
        lower = max(range(mid), key=lambda i: (vols[i], -i))
        upper = max(range(mid, n), key=lambda i: (vols[i], -i))
        # The mean of traded rows: counting the empty rows of a gappy profile would make any
        # isolated print a "peak" above 1.5 x the mean.
        traded = [v for v in vols if v > 0]
        mean = math.fsum(traded) / len(traded)
        peak = min(vols[lower], vols[upper])
        if peak > 1.5 * mean and upper - lower > 2 and min(vols[lower + 1 : upper]) < 0.5 * peak:
            return "double_dist", poc_pct
    if poc_pct > 0.65:
        return "p_shape", poc_pct
    if poc_pct < 0.35:
        return "b_shape", poc_pct
    return "d_shape", poc_pct


@dataclass(frozen=True, slots=True)
class ProfileStats:
    """Everything derived from one histogram. Prices are row labels (lower edges)."""

    volume: float
    low: float
    high: float
    poc: float
    vah: float
    val: float
    va_volume: float
    hvn: tuple[float, ...]
    lvn: tuple[float, ...]
    single_prints: tuple[float, ...]
    shape: str
    poc_pct: float
    rows: tuple[tuple[float, float], ...]


EMPTY_STATS: Final = ProfileStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (), (), (), "unknown", 0.0, ())


def compute_stats(
    vap: Mapping[int, float],
    row_price: float,
    decimals: int,
    cfg: ProfileConfig,
    periods: Mapping[int, tuple[int, int]] | None = None,
) -> ProfileStats:
    """Stats of the histogram ``vap`` (row index → volume), rows ``row_price`` apart.

    ``periods`` maps a TPO period to the (low, high) rows it traded, for single prints.
    """
    rows = sorted(r for r, v in vap.items() if v > 0)
    if not rows:
        return EMPTY_STATS
    # The seed works on traded levels only; the default on every row of the range.
    idx = rows if cfg.va_mode is ValueAreaMode.SEED else list(range(rows[0], rows[-1] + 1))
    vols = [vap.get(r, 0.0) for r in idx]
    rule = PocTieRule.LOWEST if cfg.va_mode is ValueAreaMode.SEED else cfg.poc_tie
    poc = poc_index(vols, rule)
    step = 2 if cfg.va_mode is ValueAreaMode.TWO_ROW else 1
    lo, hi = value_area(vols, poc, cfg.value_area_pct, step)
    if cfg.node_mode is NodeMode.SEED:
        seed_vols = [vap[r] for r in rows]
        hvn_rows: list[int] = []
        lvn_rows = [rows[i] for i in _lvn_seed(seed_vols, cfg.lvn_stddev_factor)]
    else:
        dense = [vap.get(r, 0.0) for r in range(rows[0], rows[-1] + 1)]
        h, lv = _nodes_smoothed(dense, cfg)
        hvn_rows = [rows[0] + i for i in h]
        lvn_rows = [rows[0] + i for i in lv]
    shape, poc_pct = _shape(vols, poc)

    def price(r: int) -> float:
        return row_label(r, row_price, decimals)

    return ProfileStats(
        volume=math.fsum(vols),
        low=price(rows[0]),
        high=price(rows[-1]),
        poc=price(idx[poc]),
        vah=price(idx[hi]),
        val=price(idx[lo]),
        va_volume=math.fsum(vols[lo : hi + 1]),
        hvn=tuple(price(r) for r in hvn_rows),
        lvn=tuple(price(r) for r in lvn_rows),
        single_prints=tuple(price(r) for r in _single_prints(periods or {})),
        shape=shape,
        poc_pct=poc_pct,
        rows=tuple((price(r), vap[r]) for r in rows),
    )


def _single_prints(periods: Mapping[int, tuple[int, int]]) -> list[int]:
    if len(periods) < 2:
        return []
    low = min(lo for lo, _ in periods.values())
    high = max(hi for _, hi in periods.values())
    diff = [0] * (high - low + 2)
    for lo, hi in periods.values():
        diff[lo - low] += 1
        diff[hi - low + 1] -= 1
    out: list[int] = []
    count = 0
    for i in range(high - low + 1):
        count += diff[i]
        if count == 1:
            out.append(low + i)
    return out


# --- the incremental histogram ---------------------------------------------------------------


class VolumeProfile:
    """A histogram of row → volume with TPO period ranges, fed one trade at a time."""

    __slots__ = ("_max_rows", "_max_vol", "origin_ns", "period_ns", "periods", "vap")

    def __init__(self, origin_ns: int = 0, period_ns: int = 30 * _NS_PER_MIN) -> None:
        self.vap: dict[int, float] = {}
        self.periods: dict[int, tuple[int, int]] = {}
        self.origin_ns = origin_ns
        self.period_ns = period_ns
        self._max_vol = 0.0
        self._max_rows: set[int] = set()

    def add(self, row: int, size: float, ts_ns: int) -> None:
        vap = self.vap
        vol = vap.get(row, 0.0) + size
        vap[row] = vol
        # The POC candidates are kept as trades arrive so the developing POC costs O(ties).
        if vol > self._max_vol:
            self._max_vol = vol
            self._max_rows = {row}
        elif vol == self._max_vol:
            self._max_rows.add(row)
        p = (ts_ns - self.origin_ns) // self.period_ns
        periods = self.periods
        span = periods.get(p)
        # The period's (low, high) rows; most trades land inside the span and change nothing.
        if span is None:
            periods[p] = (row, row)
        elif row < span[0]:
            periods[p] = (row, span[1])
        elif row > span[1]:
            periods[p] = (span[0], row)

    def poc_row(self, rule: PocTieRule = PocTieRule.MIDPOINT) -> int | None:
        """The developing POC row, from the incremental candidates (None if empty)."""
        if not self._max_rows:
            return None
        if len(self._max_rows) == 1 or rule is PocTieRule.LOWEST:
            return min(self._max_rows)
        low, high = min(self.vap), max(self.vap)
        vols = [self.vap.get(r, 0.0) for r in range(low, high + 1)]
        return low + _nearest_mid(vols, sorted(r - low for r in self._max_rows))


def merge(vaps: Iterable[Mapping[int, float]]) -> dict[int, float]:
    """Row-wise sum of histograms (rows are integers, so no float key can split a row)."""
    out: dict[int, float] = {}
    for vap in vaps:
        for r, v in vap.items():
            out[r] = out.get(r, 0.0) + v
    return out


# --- the per-instrument session engine -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NakedPoc:
    session_id: str
    price: float
    row: int


@dataclass(slots=True)
class _Session:
    sid: str
    start: int
    end: int
    profile: VolumeProfile
    last_ts: int


@dataclass(slots=True)
class _Closed:
    sid: str
    start: int
    end: int
    vap: dict[int, float] = field(default_factory=dict)


class SessionProfiler:
    """Session and composite profiles of one instrument, driven by event time only."""

    def __init__(
        self,
        instrument: Instrument,
        config: ProfileConfig | None = None,
        size_kind: SizeKind | None = SizeKind.REAL,
        spec: SessionSpec | None = None,
    ) -> None:
        self.instrument = instrument
        self.config = config or ProfileConfig()
        # None: the kind follows the trades (module docstring), tick volume until a real print.
        self.auto = size_kind is None
        self.size_kind = SizeKind.TICKS if size_kind is None else size_kind
        self.spec = spec or instrument.session_spec
        self._tick = instrument.tick_size
        self._tpr = instrument.ticks_per_row
        self._row_price = self._tpr * self._tick
        self._dec = _decimals(self._tick)
        self._current: _Session | None = None
        self._closed: deque[_Closed] = deque(maxlen=max(self.config.composite_sessions - 1, 1))
        self._closed_end = -1  # the close of the latest finalised session
        self._naked: dict[int, list[NakedPoc]] = {}
        self.late = 0
        self.out_of_hours = 0
        self.ignored = 0

    # -- input --

    def on_trade(self, trade: Trade) -> list[ProfileUpdate]:
        """Fold one trade in; returns the final updates of any session it closed."""
        ts = trade.ts_event
        cur = self._current
        out = [] if cur is None or ts < cur.end else self.on_time(ts)
        if not trade.size > 0:
            self.ignored += 1
            return out
        if trade.size_kind is not self.size_kind:
            if not (self.auto and trade.size_kind is SizeKind.REAL):
                self.ignored += 1
                return out
            self._to_real()
        if ts < self._closed_end:
            self.late += 1
            return out
        q = trade.price / self._tick  # row_of (ofcommon.grid), inlined (its half-tick rule too)
        t = round(q)
        row = (t if abs(q - t) < NEAR_HALF else half_tick(trade.price, self._tick)) // self._tpr
        if self._naked and row in self._naked:
            del self._naked[row]
        cur = self._current
        if cur is not None and ts < cur.start:
            # A pre-open print that arrives after the session's first trade (issue 8 §2.5).
            self.out_of_hours += 1
            return out
        if cur is None:
            start, end = session_bounds(self.spec, ts)
            if ts < start:
                self.out_of_hours += 1
                return out
            sid = session_date(self.spec, ts).isoformat()
            cur = _Session(sid, start, end, VolumeProfile(start, self.config.period_ns), ts)
            self._current = cur
        cur.profile.add(row, trade.size, ts)
        if ts > cur.last_ts:
            cur.last_ts = ts
        return out

    def on_time(self, ts_ns: int) -> list[ProfileUpdate]:
        """Advance event time (a trade or a heartbeat); closes the session once past its end."""
        cur = self._current
        if cur is None or ts_ns < cur.end:
            return []
        out = [self._update(cur, cur.end, final=True)]
        if self.config.composite_sessions > 1:
            out.append(self._composite_update(cur, cur.end, final=True))
        poc = cur.profile.poc_row(self._poc_rule())
        if poc is not None:
            price = row_label(poc, self._row_price, self._dec)
            self._naked.setdefault(poc, []).append(NakedPoc(cur.sid, price, poc))
        self._closed.append(_Closed(cur.sid, cur.start, cur.end, cur.profile.vap))
        self._closed_end = cur.end
        self._current = None
        return out

    def _to_real(self) -> None:
        """Real volume supersedes tick volume for good; the tick histograms are dropped."""
        self.size_kind = SizeKind.REAL
        self._current = None
        self._closed.clear()

    # -- checkpoint --

    def to_state(self) -> ProfilerState:
        """The profiler's whole state as a serialisable Struct (dict orders kept)."""
        cur = self._current
        current = None
        if cur is not None:
            prof = cur.profile
            current = SessionState(
                cur.sid,
                cur.start,
                cur.end,
                prof.origin_ns,
                prof.period_ns,
                dict(prof.vap),
                dict(prof.periods),
                prof._max_vol,
                sorted(prof._max_rows),
                cur.last_ts,
            )
        return ProfilerState(
            current=current,
            closed=[ClosedSessionState(c.sid, c.start, c.end, dict(c.vap)) for c in self._closed],
            closed_end=self._closed_end,
            naked=[
                NakedPocState(p.session_id, p.price, p.row)
                for ps in self._naked.values()
                for p in ps
            ],
            late=self.late,
            out_of_hours=self.out_of_hours,
            ignored=self.ignored,
            size_kind=self.size_kind,
        )

    def restore(self, state: ProfilerState) -> None:
        """Replace this profiler's state by ``state`` (from ``to_state``)."""
        self._current = None
        if state.current is not None:
            s = state.current
            prof = VolumeProfile(s.origin_ns, s.period_ns)
            prof.vap = dict(s.vap)
            prof.periods = dict(s.periods)
            prof._max_vol = s.max_vol
            prof._max_rows = set(s.max_rows)
            self._current = _Session(s.sid, s.start, s.end, prof, s.last_ts)
        self._closed.clear()
        self._closed.extend(_Closed(c.sid, c.start, c.end, dict(c.vap)) for c in state.closed)
        self._closed_end = state.closed_end
        self._naked = {}
        for n in state.naked:
            self._naked.setdefault(n.row, []).append(NakedPoc(n.session_id, n.price, n.row))
        self.late = state.late
        self.out_of_hours = state.out_of_hours
        self.ignored = state.ignored
        if self.auto:
            kind = state.size_kind
            if kind is None and (state.current is not None or state.closed):
                kind = SizeKind.REAL  # a snapshot from before the field profiled real volume only
            self.size_kind = SizeKind.TICKS if kind is None else kind

    def install(
        self,
        closed: Sequence[ClosedSessionState],
        current: SessionState | None,
        naked: Iterable[NakedPocState],
        size_kind: SizeKind | None = None,
    ) -> None:
        """Replace the sessions by ones rebuilt from storage (closed oldest first), histograms of
        ``size_kind`` (None: the engine's kind as it is); counters and anything not given start
        empty. The current session's POC candidates are recomputed."""
        if self.auto and size_kind is not None:
            self.size_kind = size_kind
        self._current = None
        if current is not None:
            prof = VolumeProfile(current.origin_ns, current.period_ns)
            prof.vap = {r: v for r, v in current.vap.items() if v > 0}
            prof.periods = dict(current.periods)
            if prof.vap:
                prof._max_vol = max(prof.vap.values())
                prof._max_rows = {r for r, v in prof.vap.items() if v == prof._max_vol}
                self._current = _Session(
                    current.sid, current.start, current.end, prof, current.last_ts
                )
        self._closed.clear()
        self._closed.extend(_Closed(c.sid, c.start, c.end, dict(c.vap)) for c in closed)
        self._closed_end = closed[-1].end if closed else -1
        self._naked = {}
        for n in naked:
            self._naked.setdefault(n.row, []).append(NakedPoc(n.session_id, n.price, n.row))

    def row_of(self, price: float) -> int:
        """The profile row of ``price``."""
        return row_of(price, self._tick, self._tpr)

    # -- output --

    def developing(self, *, composite: bool = True) -> list[ProfileUpdate]:
        """The developing session profile (and composite) now; [] before the first trade."""
        cur = self._current
        if cur is None:
            return []
        out = [self._update(cur, cur.last_ts, final=False)]
        if composite and self.config.composite_sessions > 1:
            out.append(self._composite_update(cur, cur.last_ts, final=False))
        return out

    def stats(self) -> ProfileStats:
        """Full stats of the developing session (EMPTY_STATS outside a session)."""
        cur = self._current
        if cur is None:
            return EMPTY_STATS
        return self._stats(cur.profile.vap, cur.profile.periods)

    def composite_stats(self) -> ProfileStats:
        """Stats of the current session plus the N − 1 sessions closed before it."""
        vaps: list[Mapping[int, float]] = [c.vap for c in self._composite_closed()]
        if self._current is not None:
            vaps.append(self._current.profile.vap)
        return self._stats(merge(vaps), None)

    @property
    def naked_pocs(self) -> list[NakedPoc]:
        """POCs of closed sessions not traded at since, oldest session first."""
        return sorted((p for ps in self._naked.values() for p in ps), key=lambda p: p.session_id)

    @property
    def developing_poc(self) -> float | None:
        """The developing POC in O(ties), without the full stats."""
        cur = self._current
        row = None if cur is None else cur.profile.poc_row(self._poc_rule())
        return None if row is None else row_label(row, self._row_price, self._dec)

    # -- internals --

    def _poc_rule(self) -> PocTieRule:
        return (
            PocTieRule.LOWEST if self.config.va_mode is ValueAreaMode.SEED else self.config.poc_tie
        )

    def _composite_closed(self) -> list[_Closed]:
        keep = self.config.composite_sessions - 1
        return list(self._closed)[-keep:] if keep > 0 else []

    def _stats(
        self, vap: Mapping[int, float], periods: Mapping[int, tuple[int, int]] | None
    ) -> ProfileStats:
        return compute_stats(vap, self._row_price, self._dec, self.config, periods)

    def _update(self, cur: _Session, ts: int, *, final: bool) -> ProfileUpdate:
        st = self._stats(cur.profile.vap, cur.profile.periods)
        naked = self._naked_prices()
        return _message(
            "session", cur.sid, cur.start, cur.end, ts, st, final, naked, self.size_kind
        )

    def _composite_update(self, cur: _Session, ts: int, *, final: bool) -> ProfileUpdate:
        closed = self._composite_closed()
        st = self._stats(merge([*(c.vap for c in closed), cur.profile.vap]), None)
        start = closed[0].start if closed else cur.start
        scope = f"composite:{self.config.composite_sessions}"
        naked = self._naked_prices()
        return _message(scope, cur.sid, start, cur.end, ts, st, final, naked, self.size_kind)

    def _naked_prices(self) -> list[float]:
        return sorted(p.price for ps in self._naked.values() for p in ps)


def _message(
    scope: str,
    sid: str,
    start: int,
    end: int,
    ts: int,
    st: ProfileStats,
    final: bool,
    naked: list[float],
    kind: SizeKind,
) -> ProfileUpdate:
    return ProfileUpdate(
        scope=scope,
        session_id=sid,
        session_start=start,
        session_end=end,
        ts_event=ts,
        poc=st.poc,
        vah=st.vah,
        val=st.val,
        volume=st.volume,
        rows=list(st.rows),
        shape=st.shape,
        final=final,
        hvn=list(st.hvn),
        lvn=list(st.lvn),
        single_prints=list(st.single_prints),
        naked_pocs=naked,
        volume_kind=kind,
    )
