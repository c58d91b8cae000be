"""The simulated market at the footprint row (issue 8, ``make demo``): background one-minute bars of
every default instrument span 10+ footprint rows and show imbalances and stacked runs, counted
with a plain per-row aggregation of the simulated trades (no analytics engine).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest
from tests.support.plain_footprint import cells_by_minute, diagonal_imbalances, stacked_runs

from ofcommon.instruments import load_registry
from ofcommon.messages import Side, Trade
from ofcommon.simulator import SimConfig, simulate
from ofcommon.venue import Published

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
START = 1_709_649_000_000_000_000  # 2024-03-05T14:30:00Z, NY cash open
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD")  # what `make demo` simulates by default


@pytest.mark.parametrize("seed", [42, 7])
def test_background_bars_span_ten_rows_with_imbalances_and_stacks(seed: int) -> None:
    registry = load_registry()
    insts = {s: registry.get(s) for s in SYMBOLS}
    config = SimConfig(
        instruments=tuple(insts.values()),
        seed=seed,
        start_ns=START,
        duration_ns=60 * MINUTE,
        patterns=(),
    )
    prints: dict[str, list[tuple[int, int, float, bool]]] = defaultdict(list)
    for item in simulate(config):
        if isinstance(item, Published) and isinstance(item.msg, Trade):
            t, tick = item.msg, insts[item.symbol].tick_size
            prints[item.symbol].append(
                (t.ts_event, round(t.price / tick), t.size, t.side is Side.BUY)
            )
    for symbol, inst in insts.items():
        bars = cells_by_minute(prints[symbol], inst.footprint.row_ticks, MINUTE)
        rows = [len(c) for c in bars.values()]  # rows with trades, as the footprint lists them
        found = [diagonal_imbalances(c) for c in bars.values()]
        assert len(rows) >= 55, symbol
        assert min(rows) >= 10, (symbol, sorted(rows)[:5])
        assert statistics.median(rows) <= 60, symbol
        assert sum(1 for f in found if f) >= 0.8 * len(rows), symbol
        assert any(stacked_runs(f) for f in found), symbol
