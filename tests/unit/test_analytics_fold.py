"""The analytics fold on hand-made and simulated sequences: outputs, rates, checkpoints.
Every test drives ``AnalyticsFold.step`` directly, as the stage does, without Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from random import Random

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from of_analytics.fold import AnalyticsFold, AnalyticsState
from of_analytics.state import AnalyticsSnapshot
from ofcommon import codec
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    BookStats,
    Consumption,
    Gap,
    Heartbeat,
    Message,
    ProfileUpdate,
    Side,
    Trade,
)
from ofcommon.simulator import SimConfig, simulate
from ofcommon.stage import Output, assign_ids
from ofcommon.venue import Published

S = 1_000_000_000
MIN = 60 * S
DAY = 86400 * S
MIDNIGHT = 1_700_006_400 * S  # 2023-11-15 00:00 UTC, a FULL_DAY session boundary
T0 = MIDNIGHT - 5 * MIN
SYMBOL = "BTCUSDT"  # FULL_DAY session, tick 0.01, row 10

REGISTRY = load_registry()


def _trade(ts: int, price: float, size: float = 1.0, side: Side = Side.BUY, tid: str = "") -> Trade:
    return Trade(ts, ts, price, size, side, tid or str(ts))


def _run(
    fold: AnalyticsFold, state: AnalyticsState, items: Iterable[tuple[str, Message]]
) -> list[Output]:
    out: list[Output] = []
    for kind, msg in items:
        out.extend(fold.step(state, kind, msg))
    return out


def _of(out: Sequence[Output], kind: str) -> list[Message]:
    return [o[1] for o in out if o[0] == kind]


def _sim(duration_ns: int = 4 * MIN) -> Iterator[tuple[str, Message]]:
    config = SimConfig(
        instruments=(REGISTRY.get(SYMBOL),), start_ns=MIDNIGHT - 2 * MIN, duration_ns=duration_ns
    )
    for item in simulate(config):
        if isinstance(item, Published):
            yield item.kind, item.msg


def test_bar_closes_on_heartbeat() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    out = _run(
        fold,
        state,
        [
            ("trades", _trade(T0 + 1 * S, 100.0, 2.0, Side.BUY)),
            ("trades", _trade(T0 + 2 * S, 110.0, 0.5, Side.SELL)),
        ],
    )
    assert all(isinstance(b, Bar) and not b.final for b in _of(out, "bars"))
    out = fold.step(state, "trades", Heartbeat(T0 + MIN, T0 + MIN, "sim"))
    finals = [b for b in _of(list(out), "bars") if isinstance(b, Bar) and b.final]
    assert [b.timeframe for b in finals] == ["1m"]
    bar = finals[0]
    assert (bar.open_ts, bar.close_ts, bar.open, bar.close) == (T0, T0 + MIN, 100.0, 110.0)
    assert (bar.volume, bar.buy_volume, bar.sell_volume, bar.trades) == (2.5, 2.0, 0.5, 2)
    assert (bar.cvd, bar.cvd_total) == (1.5, 1.5)
    assert state.bars.cvd.cvd == pytest.approx(1.5)
    # the heartbeat is on the book stream too: it closes nothing there
    assert fold.step(state, "book", Heartbeat(T0 + 2 * MIN, T0 + 2 * MIN, "sim")) == []


def test_partial_bars_and_developing_profile_at_a_bounded_event_time_rate() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    trades = [("trades", _trade(T0 + i * 100_000_000, 100.0 + i)) for i in range(60)]  # 6 s
    out = _run(fold, state, trades)
    partials = [b for b in _of(out, "bars") if isinstance(b, Bar)]
    assert all(not b.final and b.timeframe == "1m" for b in partials)
    assert len(partials) == 20  # one per 250 ms of event time: 0, 0.3, 0.6, ... 5.7 s
    dev = [u for u in _of(out, "profile") if isinstance(u, ProfileUpdate)]
    # the session once per second of event time, the composite once per 5 s (at 0 s and 5 s)
    assert [u.ts_event - T0 for u in dev if u.scope == "session"] == [i * S for i in range(6)]
    assert [u.ts_event - T0 for u in dev if u.scope == "composite:3"] == [0, 5 * S]
    assert not any(u.final for u in dev)


def test_profile_final_at_session_close() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    _run(fold, state, [("trades", _trade(MIDNIGHT - 10 * S + i * S, 100.0 + i)) for i in range(5)])
    out = fold.step(state, "trades", Heartbeat(MIDNIGHT, MIDNIGHT, "sim"))
    finals = [u for u in _of(list(out), "profile") if isinstance(u, ProfileUpdate)]
    assert [(u.scope, u.final) for u in finals] == [("session", True), ("composite:3", True)]
    assert finals[0].session_end == MIDNIGHT == finals[0].ts_event
    assert finals[0].volume == 5.0
    # a trade of the closed session afterwards is late: no output from the profile
    late = fold.step(state, "trades", _trade(MIDNIGHT - S, 100.0, tid="late"))
    assert _of(list(late), "profile") == []


def test_bookstats_only_while_the_book_is_valid() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    bids = [(99.99, 1.0), (99.98, 2.0)]
    asks = [(100.01, 1.0), (100.02, 3.0)]
    out = fold.step(state, "book", BookSnapshot(T0, T0, 1, bids, asks))
    stats = [m for m in _of(list(out), "bookstats") if isinstance(m, BookStats)]
    assert len(stats) == 1
    assert stats[0].valid
    assert stats[0].best_bid == 99.99
    out = fold.step(state, "book", BookDelta(T0 + S, T0 + S, 2, [(99.99, 0.0)], []))
    stats = [m for m in _of(list(out), "bookstats") if isinstance(m, BookStats)]
    assert len(stats) == 1
    assert stats[0].valid
    assert stats[0].best_bid == 99.98
    out = fold.step(state, "book", Gap(T0 + 2 * S, T0 + 2 * S, "book", "test"))
    assert [m.valid for m in _of(list(out), "bookstats") if isinstance(m, BookStats)] == [False]
    # broken: deltas publish nothing until the next snapshot
    assert fold.step(state, "book", BookDelta(T0 + 3 * S, T0 + 3 * S, 3, [], [])) == []
    out = fold.step(state, "book", BookSnapshot(T0 + 4 * S, T0 + 4 * S, 9, bids, asks))
    assert [m.valid for m in _of(list(out), "bookstats") if isinstance(m, BookStats)] == [True]
    # no trade has been seen: the removal at T0 + S waits for the trades stream's event time
    assert _of(list(out), "consumption") == []
    out = fold.step(state, "trades", Heartbeat(T0 + 4 * S, T0 + 4 * S, "test"))
    assert _of(list(out), "consumption") == [
        Consumption(T0 + S, Side.SELL, 99.99, removed=1.0, traded=0.0, cancelled=1.0)
    ]


def test_duplicate_trade_ids_are_dropped() -> None:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    t = _trade(T0 + S, 100.0, 1.0, tid="x1")
    _run(fold, state, [("trades", t), ("trades", t)])
    assert state.duplicates == 1
    assert state.bars.base is not None
    assert state.bars.base.volume == 1.0


def _encoded(out: list[Output]) -> list[tuple[str, bytes, object]]:
    return [(o[0], codec.encode(o[1]), o[2] if len(o) == 3 else None) for o in out]


def test_same_input_same_outputs() -> None:
    items = list(_sim())
    fold = AnalyticsFold(REGISTRY)
    first = _encoded(_run(fold, fold.initial(SYMBOL), items))
    second = _encoded(_run(AnalyticsFold(REGISTRY), fold.initial(SYMBOL), items))
    assert first == second
    kinds = {k for k, _, _ in first}
    assert kinds == {"bars", "profile", "bookstats", "consumption"}
    # the simulated run crosses midnight: a final session profile and final bars come out
    assert any(
        isinstance(o[1], ProfileUpdate) and o[1].final
        for o in _run(fold, fold.initial(SYMBOL), items)
    )


@pytest.mark.parametrize("cut", [0.1, 0.37, 0.5, 0.83])
def test_state_round_trips_mid_stream(cut: float) -> None:
    items = list(_sim())
    fold = AnalyticsFold(REGISTRY)
    whole = _encoded(_run(fold, fold.initial(SYMBOL), items))
    n = int(len(items) * cut)
    state = fold.initial(SYMBOL)
    head = _encoded(_run(fold, state, items[:n]))
    data = fold.encode_state(state)
    restored = fold.decode_state(data)
    assert fold.encode_state(restored) == data
    # a fresh fold object, as after a restart in another process
    other = AnalyticsFold(REGISTRY)
    tail = _encoded(_run(other, other.decode_state(data), items[n:]))
    assert head + tail == whole


def test_snapshot_of_another_version_is_refused() -> None:
    fold = AnalyticsFold(REGISTRY)
    snap = msgspec.msgpack.decode(fold.encode_state(fold.initial(SYMBOL)), type=AnalyticsSnapshot)
    bad = msgspec.msgpack.encode(msgspec.structs.replace(snap, version=snap.version + 1))
    with pytest.raises(ValueError, match="version"):
        fold.decode_state(bad)


# --- the two input streams in any interleaving: the same output streams, IDs included -----------


def _stage_outputs(
    order: Sequence[tuple[str, EntryId, Message]],
) -> dict[str, list[tuple[str, bytes]]]:
    """Each output stream's (ID, bytes) as the stage writes them (``ofcommon.stage``)."""
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    last: dict[str, EntryId] = {}
    streams: dict[str, list[tuple[str, bytes]]] = {}
    for kind, at, msg in order:
        for out_kind, out_id, out in assign_ids(fold.step(state, kind, msg, at), at, last):
            streams.setdefault(out_kind, []).append((str(out_id), codec.encode(out)))
    return streams


_In = tuple[str, EntryId, Message]


def _with_ids() -> tuple[list[_In], list[_In]]:
    by_kind: dict[str, list[tuple[str, EntryId, Message]]] = {"trades": [], "book": []}
    for n, (kind, msg) in enumerate(_sim(3 * MIN)):
        by_kind[kind].append((kind, EntryId(1_000 + n, 0), msg))
    return by_kind["trades"], by_kind["book"]


def _interleave(
    trades: list[_In], book: list[_In], rng: Random, burst: int, skew_ns: int
) -> list[_In]:
    """Random batches of up to ``burst`` entries from either stream, as the stage's reads give
    them, never letting one stream's event time run ``skew_ns`` ahead of the other's."""
    merged: list[_In] = []
    i = j = 0
    while i < len(trades) or j < len(book):
        pick_trades = j >= len(book) or (i < len(trades) and rng.random() < 0.5)
        if i < len(trades) and j < len(book):
            ahead = trades[i][2].ts_event - book[j][2].ts_event
            if abs(ahead) > skew_ns:
                pick_trades = ahead < 0
        take = rng.randint(1, burst)
        if pick_trades:
            merged += trades[i : i + take]
            i += take
        else:
            merged += book[j : j + take]
            j += take
    return merged


@settings(max_examples=5, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1, max_value=100))
def test_outputs_do_not_depend_on_how_the_streams_interleave(seed: int, burst: int) -> None:
    rng = Random(seed)
    trades, book = _with_ids()
    # the streams in entry-ID order, as the stage merges them
    reference = _stage_outputs(sorted([*trades, *book], key=lambda e: e[1]))
    events = [codec.decode(d) for _, d in reference["consumption"]]
    assert all(isinstance(c, Consumption) for c in events)
    # the simulated book is consumed by trades, pulled and refilled: every path is exercised
    assert sum(1 for c in events if isinstance(c, Consumption) and c.traded > 0) > 20
    assert sum(1 for c in events if isinstance(c, Consumption) and c.cancelled > 0) > 20
    assert sum(1 for c in events if isinstance(c, Consumption) and c.refilled) > 20
    # any interleaving within the engine's skew bound (BookParams.max_skew_ns, 60 s) agrees
    assert _stage_outputs(_interleave(trades, book, rng, burst, 30 * S)) == reference


@pytest.mark.parametrize(
    ("price", "size"),
    [(100.0, float("inf")), (float("nan"), 1.0), (float("inf"), 1.0), (100.0, 0.0), (100.0, -1.0)],
)
def test_a_non_finite_or_empty_print_is_refused_before_anything_changes(
    price: float, size: float
) -> None:
    # An infinite size used to be folded into the open bar: every later output of that bar and its
    # database row were poisoned, and the stage could only blame the innocent trade that closed it.
    fold = AnalyticsFold(load_registry())
    state = fold.initial("BTCUSDT")
    fold.step(state, "trades", Trade(T0, T0, 100.0, 1.0, Side.BUY, "ok"))
    before = fold.encode_state(state)
    with pytest.raises(ValueError, match="must be finite"):
        fold.step(state, "trades", Trade(T0 + 1, T0 + 1, price, size, Side.BUY, "bad"))
    assert fold.encode_state(state) == before
    # the next real print (even one reusing the refused trade's id) is folded as usual
    fold.step(state, "trades", Trade(T0 + 2, T0 + 2, 100.5, 2.0, Side.SELL, "bad"))
    assert state.bars.base is not None
    assert state.bars.base.volume == 3.0
