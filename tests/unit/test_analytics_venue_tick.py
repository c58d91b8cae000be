"""The analytics fold adopts the venue's tick from an ``InstrumentSpec`` on the trades stream: the
book window at once, bars and profile once no bar is open; mismatches counted, checkpoints exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import msgspec
import pytest

from of_analytics.fold import AnalyticsFold, AnalyticsState
from ofcommon.instruments import Registry, load_registry
from ofcommon.messages import BookSnapshot, BookStats, InstrumentSpec, Message, Side, Trade
from ofcommon.simulator import SimConfig, simulate
from ofcommon.stage import Output
from ofcommon.venue import Published

S = 1_000_000_000
MIN = 60 * S
MIDNIGHT = 1_700_006_400 * S  # 2023-11-15 00:00 UTC
SYMBOL = "BTCUSDT"
VENUE_TICK = 0.10  # what Bybit's instruments-info says for BTCUSDT linear
# A registry whose tick is stale (0.01, row 10), as the shipped one was before it learnt 0.10.
REGISTRY = Registry(
    [
        msgspec.structs.replace(i, tick_size=0.01) if i.symbol == SYMBOL else i
        for i in load_registry()
    ]
)
# The reference: the same registry, but with the venue's tick written in it.
AT_VENUE_TICK = Registry(
    [
        msgspec.structs.replace(i, tick_size=VENUE_TICK) if i.symbol == SYMBOL else i
        for i in REGISTRY
    ]
)


def _spec(ts: int, tick: float = VENUE_TICK) -> InstrumentSpec:
    return InstrumentSpec(
        ts_event=ts, ts_recv=ts, venue="bybit:linear", venue_symbol=SYMBOL, tick_size=tick
    )


def _sim(start: int, duration: int) -> list[tuple[str, Message]]:
    config = SimConfig(instruments=(REGISTRY.get(SYMBOL),), start_ns=start, duration_ns=duration)
    return [(p.kind, p.msg) for p in simulate(config) if isinstance(p, Published)]


def _both(ts: int, tick: float = VENUE_TICK) -> list[tuple[str, Message]]:
    """The spec as the feeds publish it: on the trades stream and on the book stream."""
    return [("trades", _spec(ts, tick)), ("book", _spec(ts, tick))]


def _run(
    fold: AnalyticsFold, state: AnalyticsState, items: Iterable[tuple[str, Message]]
) -> list[Output]:
    out: list[Output] = []
    for kind, msg in items:
        out.extend(fold.step(state, kind, msg))
    return out


def _encoded(out: Iterable[Output]) -> Iterator[tuple[str, bytes]]:
    for o in out:
        yield o[0], msgspec.msgpack.encode(o[1])


def test_a_spec_before_the_first_trade_gives_the_outputs_of_the_venue_tick() -> None:
    items = _sim(MIDNIGHT - 2 * MIN, 4 * MIN)
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    got = _run(fold, state, [*_both(MIDNIGHT - 3 * MIN), *items])
    ref_fold = AnalyticsFold(AT_VENUE_TICK)
    want = _run(ref_fold, ref_fold.initial(SYMBOL), items)
    assert list(_encoded(got)) == list(_encoded(want))
    assert any(o[0] == "bars" for o in got)
    assert fold.tallies(state)["venue_tick_mismatches"] == 1


def test_the_book_window_is_ten_venue_ticks() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    fold.step(state, "book", _spec(MIDNIGHT))
    bids = [(100.0 - 0.1 * k, 1.0 + k) for k in range(20)]
    asks = [(100.1 + 0.1 * k, 2.0 + k) for k in range(20)]
    out = fold.step(state, "book", BookSnapshot(MIDNIGHT, MIDNIGHT, 1, bids, asks))
    (stats,) = [o[1] for o in out if isinstance(o[1], BookStats)]
    mid = (100.0 + 100.1) / 2
    # plain reference: levels within 10 x 0.10 of the mid (the registry tick would give 0.10)
    assert stats.bid_depth == pytest.approx(sum(s for p, s in bids if p >= mid - 1.0 - 1e-9))
    assert stats.ask_depth == pytest.approx(sum(s for p, s in asks if p <= mid + 1.0 + 1e-9))
    assert stats.bid_depth == pytest.approx(sum(1.0 + k for k in range(10)))


def test_a_mismatch_is_logged_once_and_counted_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    with caplog.at_level(logging.WARNING, logger="of_analytics.venuespec"):
        for k in range(3):  # the feed republishes on every reconnect
            fold.step(state, "trades", _spec(MIDNIGHT + k * S))
    warnings = [r for r in caplog.records if "registry says" in r.getMessage()]
    assert len(warnings) <= 1  # once per process (an earlier test may have logged it)
    assert fold.tallies(state)["venue_tick_mismatches"] == 1
    fold.step(state, "trades", _spec(MIDNIGHT + 5 * S, REGISTRY.get(SYMBOL).tick_size))
    assert fold.tallies(state)["venue_tick_mismatches"] == 1
    assert state.spec.tick == 0.0
    assert state.book.params.row == REGISTRY.get(SYMBOL).tick_size


def test_an_unusable_spec_is_refused_and_the_registry_grid_kept() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    for tick in (0.3, 0.0, float("nan")):  # 10.0 is no multiple of 0.3; not positive
        fold.step(state, "trades", _spec(MIDNIGHT, tick))
    assert fold.tallies(state)["venue_specs_refused"] == 3
    assert state.spec.tick == 0.0
    assert state.book.params.row == REGISTRY.get(SYMBOL).tick_size


def _split(at: int) -> tuple[list[tuple[str, Message]], list[tuple[str, Message]]]:
    """A simulated stream across a UTC midnight, cut at the first message at or past ``at``."""
    items = _sim(MIDNIGHT - 3 * MIN, 5 * MIN)
    cut = next(i for i, (_, m) in enumerate(items) if getattr(m, "ts_event", 0) >= at)
    return items[:cut], items[cut:]


def test_mid_bar_the_book_switches_at_once_and_the_bars_once_no_bar_is_open() -> None:
    before, after = _split(MIDNIGHT - 30 * S)
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    _run(fold, state, before)
    assert state.bars.base is not None  # bars are open: the switch must wait
    _run(fold, state, _both(MIDNIGHT - 30 * S))
    assert state.book.params.row == VENUE_TICK
    assert state.spec.tick == 0.0
    assert state.spec.pending == VENUE_TICK
    got = _run(fold, state, after)
    assert state.spec.tick == VENUE_TICK
    assert not state.spec.pending
    # reference: a fold on the venue tick from the start, over the same inputs
    ref = AnalyticsFold(AT_VENUE_TICK)
    ref_state = ref.initial(SYMBOL)
    _run(ref, ref_state, before)
    want = _run(ref, ref_state, after)

    def new_day(out: list[Output], kind: str) -> list[bytes]:
        msgs = [o[1] for o in out if o[0] == kind]
        return [msgspec.msgpack.encode(m) for m in msgs if getattr(m, "open_ts", 0) >= MIDNIGHT]

    assert new_day(got, "bars")
    assert new_day(got, "bars") == new_day(want, "bars")
    stats = [msgspec.msgpack.encode(o[1]) for o in got if o[0] == "bookstats"]
    assert stats
    assert stats == [msgspec.msgpack.encode(o[1]) for o in want if o[0] == "bookstats"]


def test_a_checkpoint_keeps_the_venue_tick_and_the_pending_switch() -> None:
    before, after = _split(MIDNIGHT - 90 * S)
    items = [*before, *_both(MIDNIGHT - 90 * S)]
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    _run(fold, state, items)
    whole = _run(fold, state, after)
    again = AnalyticsFold(REGISTRY)
    restarted = again.initial(SYMBOL)
    _run(again, restarted, items)
    assert restarted.spec.pending == VENUE_TICK
    resumed = AnalyticsFold(REGISTRY)
    state2 = resumed.decode_state(again.encode_state(restarted))
    assert state2.spec == restarted.spec
    assert state2.book.params.row == VENUE_TICK
    assert list(_encoded(_run(resumed, state2, after))) == list(_encoded(whole))
    assert state2.spec.tick == VENUE_TICK
    assert resumed.encode_state(state2) == fold.encode_state(state)


def test_a_spec_is_no_trade_and_moves_no_clock() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    fold.step(state, "trades", Trade(MIDNIGHT, MIDNIGHT, 100.0, 1.0, Side.BUY, "a"))
    out = fold.step(state, "trades", _spec(MIDNIGHT + 5 * MIN))  # far ahead: must not close a bar
    assert list(out) == []
    assert state.bars.base is not None
    assert state.bars.base.open_ts == MIDNIGHT


def test_the_book_switches_at_its_own_streams_spec_however_the_streams_interleave() -> None:
    # The stage interleaves the two input streams as they happen to be read (a live reader sees
    # book entries before trades written just before them): the book window must switch at the
    # same book entry either way, or a re-run after a crash gives other book statistics.
    items = _sim(MIDNIGHT - 2 * MIN, 2 * MIN)
    book_at = [i for i, (k, _) in enumerate(items) if k == "book"]
    at = book_at[len(book_at) // 2]
    early = [*items[:at], *_both(MIDNIGHT - MIN), *items[at:]]
    # the trades stream's copy folded 40 book entries later than its book-stream twin
    late_at = book_at[len(book_at) // 2 + 40]
    late = [*items[:at], ("book", _spec(MIDNIGHT - MIN)), *items[at:late_at]]
    late += [("trades", _spec(MIDNIGHT - MIN)), *items[late_at:]]

    def stats(order: list[tuple[str, Message]]) -> list[bytes]:
        fold = AnalyticsFold(REGISTRY)
        out = _run(fold, fold.initial(SYMBOL), order)
        return [msgspec.msgpack.encode(o[1]) for o in out if o[0] == "bookstats"]

    got_early, got_late = stats(early), stats(late)
    assert got_early
    assert got_early == got_late
    # and the switch happened: the book statistics differ from a run without any spec
    assert got_early != stats(items)


def test_a_trades_stream_spec_alone_leaves_the_book_window() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    fold.step(state, "trades", _spec(MIDNIGHT))
    assert state.book.params.row == REGISTRY.get(SYMBOL).tick_size
    assert state.spec.tick == VENUE_TICK  # bars and profile took it (fresh state: at once)
    fold.step(state, "book", _spec(MIDNIGHT))
    assert state.book.params.row == VENUE_TICK
    assert fold.tallies(state)["venue_tick_mismatches"] == 1  # the book's copy counts nothing
