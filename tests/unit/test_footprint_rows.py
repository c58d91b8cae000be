"""Footprint rows (issue 8 §1): ``footprint.row_ticks`` per instrument, the row in price following
the tick the Instrument carries, and real trades at tick-level rows against a plain aggregation
written here (rows, diagonal imbalances, stacked runs, delta at the high and the low).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from tests.support.binance_frames import binance_lines
from tests.support.fake_bybit import instrument_row
from tests.support.plain_footprint import diagonal_imbalances, stacked_runs
from tests.support.real_data import BINANCE_SPOT, require

from of_analytics.bars import BarBuilder
from of_feed_bybit.rest import check_instruments, parse_instrument
from ofcommon.instruments import RegistryConfigError, load_registry
from ofcommon.messages import Bar, Side, Trade

MIN = 60 * 1_000_000_000

# Venue ticks: Bybit v5 instruments-info ``priceFilter.tickSize`` of the linear perpetual
# (issue 8 §1: BTCUSDT linear 0.10, where the seed's registry said 0.01).
BYBIT_LINEAR_TICKS = {"BTCUSDT": "0.10"}


def test_registry_ticks_agree_with_the_venue() -> None:
    reg = load_registry()
    btc = reg.get("BTCUSDT")
    assert btc.bybit is not None
    assert btc.bybit.category == "linear"
    venue = {s: reg.get(s).bybit for s in BYBIT_LINEAR_TICKS}
    infos = [
        parse_instrument("linear", instrument_row(v.symbol, BYBIT_LINEAR_TICKS[s], "0.001"))
        for s, v in venue.items()
        if v is not None
    ]
    assert len(infos) == len(BYBIT_LINEAR_TICKS)
    # The feed's own start-up check finds no tick that disagrees with the venue.
    mismatches = check_instruments([reg.get(s) for s in BYBIT_LINEAR_TICKS], infos)
    assert [m for m in mismatches if m.problem == "tick_size"] == []
    assert Decimal(repr(btc.tick_size)) == Decimal("0.10")


def test_every_default_row_is_whole_ticks_and_nests_in_the_profile_row() -> None:
    for inst in load_registry():
        n = inst.footprint.row_ticks
        assert n >= 1, inst.symbol
        assert inst.footprint_row == pytest.approx(n * inst.tick_size, rel=1e-12), inst.symbol
        # A rebuild sums stored footprint rows into profile rows: they must nest.
        assert inst.ticks_per_row % n == 0, inst.symbol
        assert n < inst.ticks_per_row or inst.ticks_per_row == 1, inst.symbol


def test_row_ticks_is_overridable_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "instruments.toml"
    path.write_text("[instruments.EURUSD.footprint]\nrow_ticks = 5\n")
    eur = load_registry(path).get("EURUSD")
    assert eur.footprint.row_ticks == 5
    assert (
        eur.footprint.imbalance_preset == load_registry().get("EURUSD").footprint.imbalance_preset
    )
    for bad in ("0", "1.5", '"auto"'):
        path.write_text(f"[instruments.EURUSD.footprint]\nrow_ticks = {bad}\n")
        with pytest.raises(RegistryConfigError, match=r"footprint\.row_ticks"):
            load_registry(path)


def test_the_row_follows_the_tick_the_instrument_carries() -> None:
    btc = load_registry().get("BTCUSDT")
    # The same row_ticks on a venue tick of 0.50 (older Bybit captures) gives rows of 10.0.
    coarse = msgspec.structs.replace(btc, tick_size=0.5)
    for inst, row in ((btc, 20 * Decimal("0.1")), (coarse, 20 * Decimal("0.5"))):
        b = BarBuilder.for_instrument(inst, composed=())
        state = b.initial()
        prices = [60000.0, 60001.5, 60009.5, 60010.0, 60023.0]
        for i, p in enumerate(prices):
            b.on_trade(state, Trade(i, i, p, 1.0, Side.BUY, f"t{i}"))
        bar = b.partial(state)
        assert bar is not None
        expected = sorted({(Decimal(str(p)) // row) * row for p in prices})
        assert [Decimal(str(r.price)) for r in bar.footprint] == expected


# --- real trades -----------------------------------------------------------------------------


def _binance_trades() -> list[Trade]:
    out = []
    for _, obj in binance_lines(require(BINANCE_SPOT)):
        d = obj.get("data", obj)
        if d.get("e") == "trade":
            ts = int(d["T"]) * 1_000_000
            side = Side.SELL if d["m"] else Side.BUY  # buyer is maker: the seller aggressed
            out.append(Trade(ts, ts, float(d["p"]), float(d["q"]), side, str(d["t"])))
    return out


def _bars(row_ticks: int, tick: float) -> list[Bar]:
    btc = load_registry().get("BTCUSDT")
    fp = msgspec.structs.replace(btc.footprint, row_ticks=row_ticks)
    inst = msgspec.structs.replace(btc, tick_size=tick, footprint=fp)
    b = BarBuilder.for_instrument(inst, composed=())
    state = b.initial()
    trades = _binance_trades()
    out = b.on_trades(state, trades)
    out += b.advance(state, trades[-1].ts_event + MIN)
    assert state.late_trades == 0
    return out


def _plain_cells(row: Decimal) -> dict[int, dict[int, list[float]]]:
    """minute -> row index -> [bid, ask]: the per-row aggregation, Decimal prices."""
    cells: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for t in _binance_trades():
        k = int(Decimal(str(t.price)) // row)
        cells[t.ts_event // MIN * MIN][k][0 if t.side is Side.SELL else 1] += t.size
    return cells


def test_real_tick_level_footprints_equal_a_plain_per_row_aggregation() -> None:
    tick = Decimal("0.01")
    bars = _bars(1, 0.01)
    plain = _plain_cells(tick)
    assert [b.open_ts for b in bars] == sorted(plain)
    imbalanced = stacked = extremes_differ = 0
    for bar in bars:
        c = plain[bar.open_ts]
        got = {
            int(Decimal(str(r.price)) / tick): [r.bid_volume, r.ask_volume] for r in bar.footprint
        }
        assert sorted(got) == sorted(c)
        for k, (bid, ask) in got.items():
            assert bid == pytest.approx(c[k][0], rel=1e-9, abs=1e-12)
            assert ask == pytest.approx(c[k][1], rel=1e-9, abs=1e-12)
        top, bottom = c[max(c)], c[min(c)]
        assert bar.delta_at_high == pytest.approx(top[1] - top[0], abs=1e-9)
        assert bar.delta_at_low == pytest.approx(bottom[1] - bottom[0], abs=1e-9)
        extremes_differ += bar.delta_at_high != bar.delta_at_low
        found = diagonal_imbalances(c)
        ours = {(int(Decimal(str(i.price)) / tick), int(i.side)) for i in bar.imbalances}
        assert ours == found
        imbalanced += bool(found)
        runs = stacked_runs(found)
        assert sorted(
            (int(s.side), int(Decimal(str(s.low)) / tick), int(Decimal(str(s.high)) / tick))
            for s in bar.stacked
        ) == sorted(runs)
        stacked += bool(runs)
    full = len(bars) - 2  # the capture starts and ends inside a minute
    assert full >= 5
    # At the trader's row the analytics exist at all: the old 10.0 row gave 1-3 rows a bar.
    assert imbalanced >= full
    assert stacked >= 1
    assert extremes_differ == len(bars)


def test_real_bars_at_the_default_row_have_10_to_60_rows() -> None:
    btc = load_registry().get("BTCUSDT")
    # The registry row in price (20 ticks of 0.10) on the capture's own 0.01 grid.
    row_ticks = round(btc.footprint_row / 0.01)
    bars = _bars(row_ticks, 0.01)[1:-1]  # full minutes only
    rows = [len(b.footprint) for b in bars]
    ranges = [b.high - b.low for b in bars]
    # The footprint is dense enough: as many rows as the range holds, at most.
    for n, rng in zip(rows, ranges, strict=True):
        assert n <= rng / btc.footprint_row + 1
    assert 10 <= statistics.median(rows) <= 60
    # Imbalances in every full minute and stacked runs in some (the flow of the capture has them).
    assert all(b.imbalances for b in bars)
    assert any(b.stacked for b in bars)
