"""Every injected episode is really there: its label's claims hold on the simulated tape and book.

Bars are rebuilt from the trades (one-minute, epoch-aligned), exactly as a footprint stage would.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import pytest

from ofcommon.instruments import Instrument, load_registry
from ofcommon.messages import BookDelta, BookSnapshot, Side, Trade
from ofcommon.simulator import EPISODE_PATTERNS, Label, SimConfig, simulate

MINUTE = 60_000_000_000
START = 1_709_649_000_000_000_000  # 2024-03-05T14:30:00Z: NY cash open, every session trading
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD")
SEEDS = (3, 11)


@dataclass
class Bar:
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    delta: float = 0.0
    rows: dict[float, float] = field(default_factory=dict)  # price -> volume


@dataclass
class Tape:
    """One instrument's trades, bars and the book replayed to just before each sweep."""

    tick: float
    trades: list[Trade] = field(default_factory=list)
    bars: dict[int, Bar] = field(default_factory=dict)
    refills: dict[float, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, t: Trade) -> None:
        self.trades.append(t)
        minute = t.ts_event // MINUTE
        bar = self.bars.get(minute)
        if bar is None:
            bar = self.bars[minute] = Bar(t.price, t.price, t.price, t.price)
        bar.high = max(bar.high, t.price)
        bar.low = min(bar.low, t.price)
        bar.close = t.price
        bar.volume += t.size
        bar.delta += t.size * t.side
        bar.rows[t.price] = bar.rows.get(t.price, 0.0) + t.size

    def window(self, start: int, end: int) -> list[Trade]:
        return [t for t in self.trades if start <= t.ts_event < end]

    def bar(self, ts: int) -> Bar:
        return self.bars[ts // MINUTE]

    def mean_volume(self, before: int, count: int) -> float:
        last = before // MINUTE
        return sum(self.bars[m].volume for m in range(last - count, last) if m in self.bars) / count

    def ticks(self, a: float, b: float) -> float:
        return round((a - b) / self.tick, 6)


@dataclass
class Run:
    instruments: dict[str, Instrument]
    tapes: dict[str, Tape]
    labels: list[Label]
    books_before: dict[str, tuple[dict[float, float], dict[float, float]]]  # label id -> book


@cache
def run(seed: int) -> Run:
    registry = load_registry()
    instruments = {s: registry.get(s) for s in SYMBOLS}
    config = SimConfig(
        instruments=tuple(instruments.values()),
        start_ns=START,
        seed=seed,
        duration_ns=100 * MINUTE,
        episode_gap_s=45.0,
    )
    items = list(simulate(config))
    labels = [i for i in items if isinstance(i, Label)]
    sweep_starts = {
        (lb.instrument, lb.start_ns): lb.label_id for lb in labels if lb.pattern == "sweep"
    }
    tapes = {s: Tape(i.tick_size) for s, i in instruments.items()}
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {
        s: ({}, {}) for s in instruments
    }
    before: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    for item in items:
        if isinstance(item, Label):
            continue
        msg = item.msg
        bids, asks = books[item.symbol]
        if isinstance(msg, Trade):
            key = (item.symbol, msg.ts_event)
            if key in sweep_starts and sweep_starts[key] not in before:
                before[sweep_starts[key]] = (dict(bids), dict(asks))
            tapes[item.symbol].add(msg)
        elif isinstance(msg, BookSnapshot | BookDelta):
            if isinstance(msg, BookSnapshot):
                bids.clear()
                asks.clear()
            for levels, side in ((msg.bids, bids), (msg.asks, asks)):
                for price, size in levels:
                    if size:
                        if size > side.get(price, math.inf):
                            tapes[item.symbol].refills[price].append(msg.ts_event)
                        side[price] = size
                    else:
                        side.pop(price, None)
    return Run(instruments, tapes, labels, before)


def episodes(pattern: str) -> Iterable[tuple[Run, Label]]:
    for seed in SEEDS:
        r = run(seed)
        for label in r.labels:
            if label.pattern == pattern:
                yield r, label


def bars_of(tape: Tape, label: Label) -> list[Bar]:
    return [tape.bar(label.start_ns + i * MINUTE) for i in range(int(label.params["bars"]))]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_pattern_is_injected_for_every_instrument(seed: int) -> None:
    found = {(lb.instrument, lb.pattern) for lb in run(seed).labels}
    for symbol in SYMBOLS:
        for pattern in EPISODE_PATTERNS:
            assert (symbol, pattern) in found, (seed, symbol, pattern)


def test_both_directions_occur() -> None:
    for pattern in EPISODE_PATTERNS:
        directions = {lb.direction for _, lb in episodes(pattern)}
        assert directions == {1, -1}, pattern


def test_absorption_holds_the_level_under_heavy_aggression() -> None:
    for r, lb in episodes("absorption"):
        inst, tape = r.instruments[lb.instrument], r.tapes[lb.instrument]
        level = lb.price_levels[0]
        aggressor = Side.BUY if lb.params["aggressor"] == "buy" else Side.SELL
        bound = inst.absorption.max_price_displacement_ticks
        assert lb.params["max_price_displacement_ticks"] == bound
        window = tape.window(lb.start_ns, lb.end_ns)
        for t in window:
            beyond = tape.ticks(t.price, level) * aggressor
            assert beyond <= bound, (lb.label_id, t)  # price never gets through the level
            assert abs(tape.ticks(t.price, level)) <= max(bound, 1), (lb.label_id, t)
        for i, bar in enumerate(bars_of(tape, lb)):
            at_level = sum(
                t.size
                for t in window
                if t.side == aggressor
                and t.price == level
                and lb.start_ns + i * MINUTE <= t.ts_event < lb.start_ns + (i + 1) * MINUTE
            )
            assert at_level >= inst.absorption.min_aggressive_volume, (lb.label_id, i, at_level)
            assert math.isclose(at_level, float(lb.params["volume_per_bar"][i]), abs_tol=1e-6)
            # Seed §8.1 method 1: strong delta one way, the bar closes the other way.
            assert bar.delta * aggressor >= inst.absorption.min_aggressive_volume
            assert (bar.close - bar.open) * aggressor < 0
        refills = [ts for ts in tape.refills[level] if lb.start_ns <= ts < lb.end_ns]
        assert len(refills) >= 2 * int(lb.params["bars"]), lb.label_id  # passive size came back


def test_initiative_drives_with_delta_displacement_and_accelerating_volume() -> None:
    for r, lb in episodes("initiative"):
        params = r.instruments[lb.instrument].initiative
        tape = r.tapes[lb.instrument]
        bars = bars_of(tape, lb)
        baseline = tape.mean_volume(lb.start_ns, 10)
        assert math.isclose(baseline, float(lb.params["baseline_volume"]), abs_tol=0.01)
        for prev, bar in zip([None, *bars], bars, strict=False):
            assert bar.delta * lb.direction >= params.min_delta_threshold, lb.label_id
            body = tape.ticks(bar.close, bar.open) * lb.direction
            assert body >= params.min_price_displacement_ticks, (lb.label_id, body)
            assert bar.volume >= params.volume_acceleration_min * baseline, lb.label_id
            if prev is not None:
                assert bar.volume > prev.volume, lb.label_id  # accelerating
        assert lb.price_levels == [bars[0].open, bars[-1].close]


def test_sweep_consumes_thin_levels_within_milliseconds() -> None:
    for r, lb in episodes("sweep"):
        params = r.instruments[lb.instrument].sweep
        tape = r.tapes[lb.instrument]
        side = Side.BUY if lb.direction > 0 else Side.SELL
        prints = [t for t in tape.window(lb.start_ns, lb.end_ns + 1) if t.side == side]
        levels = sorted({t.price for t in prints}, reverse=side == Side.SELL)
        swept = int(lb.params["levels_swept"])
        assert swept >= params.min_levels_swept >= 3
        assert len(levels) >= swept, lb.label_id
        assert (lb.end_ns - lb.start_ns) / 1e6 <= params.max_time_ms, lb.label_id
        assert [levels[0], levels[swept - 1]] == lb.price_levels
        bids, asks = r.books_before[lb.label_id]
        book = asks if side == Side.BUY else bids
        for price in levels[:swept]:
            traded = sum(t.size for t in prints if t.price == price)
            assert book[price] < params.thin_book_threshold, (lb.label_id, price)  # thin
            assert math.isclose(traded, book[price], abs_tol=1e-9)  # taken whole
            assert traded <= params.max_volume_per_level


def test_exhaustion_new_extremes_on_fading_volume_then_thin_extreme() -> None:
    for r, lb in episodes("exhaustion"):
        params = r.instruments[lb.instrument].exhaustion
        tape = r.tapes[lb.instrument]
        push = -lb.direction
        bars = bars_of(tape, lb)
        assert len(bars) == params.min_bars_declining + 1
        extremes = [b.high if push > 0 else b.low for b in bars]
        before = [
            tape.bars[m]
            for m in range(lb.start_ns // MINUTE - 10, lb.start_ns // MINUTE)
            if m in tape.bars
        ]
        prior = [b.high if push > 0 else b.low for b in before]
        assert all((e - p) * push > 0 for p, e in itertools.pairwise(extremes)), lb.label_id
        assert all((extremes[0] - p) * push > 0 for p in prior), lb.label_id  # a new extreme
        volumes = [b.volume for b in bars]
        assert all(v2 < v1 for v1, v2 in itertools.pairwise(volumes)), lb.label_id
        assert 1 - volumes[-1] / volumes[0] >= params.volume_decline_pct, lb.label_id
        deltas = [b.delta * push for b in bars]
        assert all(d2 < d1 for d1, d2 in itertools.pairwise(deltas)), lb.label_id
        last = bars[-1]
        assert last.rows[extremes[-1]] <= 0.05 * last.volume, lb.label_id  # exhaustion print
        assert lb.price_levels == [extremes[-1]]


def test_divergence_new_extreme_without_cumulative_delta() -> None:
    for r, lb in episodes("divergence"):
        params = r.instruments[lb.instrument].divergence
        tape = r.tapes[lb.instrument]
        swing = -lb.direction
        bars = bars_of(tape, lb)
        first = int(lb.params["first_extreme_bar"]) - 1
        second = int(lb.params["second_extreme_bar"]) - 1
        extremes = [b.high if swing > 0 else b.low for b in bars]
        p1, p2 = lb.price_levels
        assert extremes[first] == p1
        assert extremes[second] == p2
        assert tape.ticks(p2, p1) * swing >= params.min_price_new_extreme_ticks, lb.label_id
        lookback = range(
            lb.start_ns // MINUTE + second - params.lookback_bars, lb.start_ns // MINUTE + second
        )
        for m in lookback:
            if m in tape.bars:
                extreme = tape.bars[m].high if swing > 0 else tape.bars[m].low
                assert (p2 - extreme) * swing > 0, (lb.label_id, m)  # beyond the whole lookback
        cvd, running = [], 0.0
        for bar in bars:
            running += bar.delta
            cvd.append(running)
        claimed = lb.params["cvd_at_bar_close"]
        assert isinstance(claimed, list)
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(cvd, claimed, strict=True))
        assert cvd[first] * swing > 0
        # Delta fails: the second extreme's cumulative delta is below the failure fraction.
        assert cvd[second] * swing <= params.delta_failure_pct * cvd[first] * swing, lb.label_id
        assert cvd[second] * swing < cvd[first] * swing


def test_regimes_tile_the_run_per_instrument() -> None:
    r = run(SEEDS[0])
    for symbol in SYMBOLS:
        regimes = [lb for lb in r.labels if lb.instrument == symbol and lb.pattern == "regime"]
        assert regimes, symbol
        for a, b in itertools.pairwise(regimes):
            assert a.end_ns <= b.start_ns
        assert {lb.params["regime"] for lb in regimes} <= {"trend", "range"}
