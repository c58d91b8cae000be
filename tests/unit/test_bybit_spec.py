"""The Bybit feed's ``InstrumentSpec``: instruments-info rows (the fake venue's real shape) become a
frame of our own that the parser turns into specs, once per change and again after a disconnect.
"""

from __future__ import annotations

import pytest
from tests.support.fake_bybit import instrument_row

from of_analytics.fold import AnalyticsFold
from of_feed_bybit.parser import BybitParser
from of_feed_bybit.rest import parse_instrument
from of_feed_bybit.spec import spec_frame
from ofcommon.instruments import Registry, default_instruments
from ofcommon.messages import BookSnapshot, BookStats, InstrumentSpec
from ofcommon.venue import BadFrame

REGISTRY = Registry(default_instruments())
MS = 1_000_000
T_MS = 1_733_011_200_000
ROWS = [instrument_row("BTCUSDT", "0.10", "0.001"), instrument_row("BZUSDT", "0.001", "0.1")]


def _frame(rows: list[dict[str, object]] = ROWS) -> bytes:
    return spec_frame("linear", [parse_instrument("linear", r) for r in rows], T_MS)


def test_instruments_info_becomes_one_spec_per_instrument_on_its_trades_stream() -> None:
    parser = BybitParser("linear", REGISTRY)
    out = parser.parse(T_MS * MS + 5, _frame())
    got = {(p.symbol, p.kind): p.msg for p in out}
    btc = got[("BTCUSDT", "trades")]
    assert btc == InstrumentSpec(
        ts_event=T_MS * MS,
        ts_recv=T_MS * MS + 5,
        venue="bybit:linear",
        venue_symbol="BTCUSDT",
        tick_size=0.10,
        size_step=0.001,
    )
    assert isinstance(got[("UKOIL", "trades")], InstrumentSpec)
    assert len(out) == 2


def test_every_check_is_published_with_the_current_facts() -> None:
    parser = BybitParser("linear", REGISTRY)
    assert len(parser.parse(1, _frame())) == 2
    assert len(parser.parse(2, _frame())) == 2  # the hourly check: kept in a trimmed stream
    changed = [instrument_row("BTCUSDT", "0.50", "0.001"), ROWS[1]]
    ticks = {
        p.symbol: p.msg.tick_size
        for p in parser.parse(3, _frame(changed))
        if isinstance(p.msg, InstrumentSpec)
    }
    assert ticks == {"BTCUSDT": 0.50, "UKOIL": 0.001}


def test_a_malformed_spec_frame_is_a_bad_frame() -> None:
    parser = BybitParser("linear", REGISTRY)
    with pytest.raises(BadFrame, match="instruments_info"):
        parser.parse(1, b'{"topic":"of.instruments_info","ts":1,"data":{"category":"linear"}}')


def test_the_fold_fed_by_the_parser_uses_the_venue_tick_for_the_book_window() -> None:
    parser = BybitParser("linear", REGISTRY)
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial("BTCUSDT")
    for p in parser.parse(T_MS * MS, _frame()):
        if p.symbol == "BTCUSDT":
            fold.step(state, p.kind, p.msg)
    bids = [(65000.0 - 0.1 * k, 1.0) for k in range(30)]
    asks = [(65000.1 + 0.1 * k, 1.0) for k in range(30)]
    out = fold.step(state, "book", BookSnapshot(T_MS * MS, T_MS * MS, 1, bids, asks))
    (stats,) = [o[1] for o in out if isinstance(o[1], BookStats)]
    # ±10 venue ticks (1.00) of the mid 65000.05: 10 levels a side; the registry's 0.01 gives 1
    assert stats.bid_depth == pytest.approx(10.0)
    assert stats.ask_depth == pytest.approx(10.0)
    assert fold.tallies(state)["venue_tick_mismatches"] == 1
