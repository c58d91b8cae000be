"""The Bybit feed's ``InstrumentSpec``: instruments-info rows (the fake venue's real shape) become a
frame of our own that the parser turns into specs, once per change and again after a disconnect.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from tests.support.fake_bybit import instrument_row

from of_analytics.fold import AnalyticsFold
from of_feed_bybit.client import BybitClient, Outbox
from of_feed_bybit.parser import BybitParser
from of_feed_bybit.rest import parse_instrument
from of_feed_bybit.spec import spec_frame
from ofcommon.clock import LiveClock
from ofcommon.instruments import Registry, default_instruments
from ofcommon.messages import BookSnapshot, BookStats, InstrumentSpec
from ofcommon.recording import RecordingWriter, read_recording
from ofcommon.venue import BadFrame, Published

# A registry whose BTCUSDT tick is stale (0.01), as the shipped one was before it learnt 0.10.
REGISTRY = Registry(
    [
        msgspec.structs.replace(i, tick_size=0.01) if i.symbol == "BTCUSDT" else i
        for i in default_instruments()
    ]
)
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
    assert got[("BTCUSDT", "book")] == btc  # the book stream's own copy, for the book window
    assert isinstance(got[("UKOIL", "trades")], InstrumentSpec)
    assert isinstance(got[("UKOIL", "book")], InstrumentSpec)
    assert len(out) == 4


def test_every_check_is_published_with_the_current_facts() -> None:
    parser = BybitParser("linear", REGISTRY)
    assert len(parser.parse(1, _frame())) == 4  # two instruments, each on trades and book
    assert len(parser.parse(2, _frame())) == 4  # the hourly check: kept in a trimmed stream
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


def test_a_recording_replays_the_spec_the_live_client_published(tmp_path: Path) -> None:
    recorder = RecordingWriter(tmp_path, "bybit", "linear")
    outbox = Outbox(100)
    client = BybitClient(
        url="ws://unused",
        category="linear",
        parser=BybitParser("linear", REGISTRY),
        instruments=list(REGISTRY),
        clock=LiveClock(),
        outbox=outbox,
        recorder=recorder,
    )
    client.instruments_info([parse_instrument("linear", r) for r in ROWS])
    recorder.close()
    live = [item.msg for item in outbox.take(100) if isinstance(item, Published)]
    (path,) = tmp_path.iterdir()
    replay_parser = BybitParser("linear", REGISTRY)  # a fresh parser, as replay uses
    replayed = [
        p.msg for recv, frame in read_recording(path) for p in replay_parser.parse(recv, frame)
    ]
    assert live
    assert replayed == live
    assert {m.tick_size for m in live if isinstance(m, InstrumentSpec)} == {0.10, 0.001}
