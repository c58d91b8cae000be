"""The analytics fold does not depend on batching: how the stage interleaves its two input streams,
where it checkpoints and restores, and how a venue packs trades into frames leave outputs unchanged.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from tests.support.binance_frames import binance_lines
from tests.support.real_data import BINANCE_SPOT, require

from of_analytics.fold import AnalyticsFold, AnalyticsState
from of_analytics.state import AnalyticsSnapshot
from of_feed_bybit.parser import BybitParser
from ofcommon import codec
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import BookDelta, BookSnapshot, Heartbeat, Message, Side, Trade
from ofcommon.stage import Output

MS = 1_000_000
S = 1000 * MS
MIN = 60 * S
DAY = 1440 * MIN
MIDNIGHT = 1_700_006_400 * S  # 2023-11-15 00:00 UTC: BTCUSDT's FULL_DAY session closes here
T0 = MIDNIGHT - 3 * MIN
SYMBOL = "BTCUSDT"  # tick 0.01, row 10
REGISTRY = load_registry()
# Consumption relates the two streams and agrees only while their event times stay within
# BookParams.max_skew_ns of each other (tests/unit/test_analytics_fold.py covers it); these
# streams end with a heartbeat a day ahead, so only the single-stream outputs are compared here.
KINDS = ("bars", "profile", "bookstats")


def by_kind(out: Sequence[Output]) -> dict[str, list[bytes]]:
    """Each output stream's messages in order: the stage publishes each stream separately."""
    return {k: [codec.encode(o[1]) for o in out if o[0] == k] for k in KINDS}


# --- generated streams ---------------------------------------------------------------------------

_trade = st.tuples(
    st.integers(0, 6 * MIN // MS),  # ms after T0: the run crosses midnight
    st.integers(-400, 400),  # half-dollar steps around 30000
    st.integers(1, 400),  # quarter-lot sizes
    st.booleans(),
    st.booleans(),  # a heartbeat at this trade's time follows it
)


def trades_stream(rows: list[tuple[int, int, int, bool, bool]]) -> list[Message]:
    out: list[Message] = []
    for n, (ms, px, sz, buy, beat) in enumerate(sorted(rows)):
        ts = T0 + ms * MS
        side = Side.BUY if buy else Side.SELL
        out.append(Trade(ts, ts, 30000.0 + px * 0.5, sz * 0.25, side, f"t{n}"))
        if beat:
            out.append(Heartbeat(ts, ts, "feed"))
    last = out[-1].ts_event if out else T0
    out.append(Heartbeat(last + DAY, last + DAY, "feed"))  # closes every bar and the session
    return out


_level = st.tuples(st.integers(0, 9), st.integers(0, 4))  # (cents from the touch, size; 0 deletes)
_delta = st.tuples(
    st.integers(1, 2000),  # ms after the previous book message
    st.lists(_level, max_size=4),
    st.lists(_level, max_size=4),
    st.booleans(),  # the delta skips a sequence number: the book breaks until the next snapshot
)


def book_stream(
    deltas: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]], bool]],
) -> list[Message]:
    def bids(levels: list[tuple[int, int]]) -> list[tuple[float, float]]:
        return [(round(29999.99 - c * 0.01, 2), float(s)) for c, s in levels]

    def asks(levels: list[tuple[int, int]]) -> list[tuple[float, float]]:
        return [(round(30000.01 + c * 0.01, 2), float(s)) for c, s in levels]

    full = [(c, 1 + c) for c in range(10)]
    ts, seq = T0, 1
    out: list[Message] = [BookSnapshot(ts, ts, seq, bids(full), asks(full))]
    for k, (dt, b, a, skip) in enumerate(deltas):
        ts += dt * MS
        seq += 2 if skip else 1
        out.append(BookDelta(ts, ts, seq, bids(b), asks(a)))
        if k % 7 == 6:  # a fresh image now and then revalidates a broken book
            seq += 1
            out.append(BookSnapshot(ts, ts, seq, bids(full), asks(full)))
    return out


def run_whole(trades: list[Message], book: list[Message]) -> tuple[list[Output], bytes]:
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    out: list[Output] = []
    for m in trades:
        out.extend(fold.step(state, "trades", m))
    for m in book:
        out.extend(fold.step(state, "book", m))
    return out, fold.encode_state(state)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_trade, min_size=1, max_size=60),
    st.lists(_delta, max_size=40),
    st.lists(st.tuples(st.booleans(), st.integers(1, 12)), max_size=30),
    st.sets(st.integers(0, 200), max_size=6),
)
def test_interleaving_and_checkpoints_do_not_change_outputs(
    rows: list[tuple[int, int, int, bool, bool]],
    deltas: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]], bool]],
    reads: list[tuple[bool, int]],
    cuts: set[int],
) -> None:
    trades, book = trades_stream(rows), book_stream(deltas)
    reference, final_state = run_whole(trades, book)
    assert any(k == "bars" for k, _ in reference)
    assert any(k == "bookstats" for k, _ in reference)

    # The stage reads batches of either stream in an order set by timing; then drains both.
    order: list[tuple[str, Message]] = []
    ti = bi = 0
    for from_trades, n in [*reads, (True, len(trades)), (False, len(book))]:
        if from_trades:
            order += [("trades", m) for m in trades[ti : ti + n]]
            ti = min(ti + n, len(trades))
        else:
            order += [("book", m) for m in book[bi : bi + n]]
            bi = min(bi + n, len(book))
    assert len(order) == len(trades) + len(book)

    fold = AnalyticsFold(REGISTRY)
    state: AnalyticsState = fold.initial(SYMBOL)
    out: list[Output] = []
    for i, (kind, msg) in enumerate(order):
        if i in cuts:  # checkpoint, then resume in a fresh process
            data = fold.encode_state(state)
            fold = AnalyticsFold(REGISTRY)
            state = fold.decode_state(data)
        out.extend(fold.step(state, kind, msg))
    assert by_kind(out) == by_kind(reference)
    # Bars and profile depend on the trades stream only and the book's levels on the book stream
    # only, so those parts of the checkpoint are the same too.
    got = msgspec.msgpack.decode(fold.encode_state(state), type=AnalyticsSnapshot)
    want = msgspec.msgpack.decode(final_state, type=AnalyticsSnapshot)
    assert (got.bars, got.profile) == (want.bars, want.profile)
    assert (got.book.bids, got.book.asks, got.book.valid) == (
        want.book.bids,
        want.book.asks,
        want.book.valid,
    )


# --- trades packed into venue frames -------------------------------------------------------------


def frame(rows: list[dict[str, Any]]) -> bytes:
    """A Bybit v5 publicTrade frame of Binance trades ``rows``, mapped as the converter does."""
    data = [
        {
            "T": r["T"],
            "s": "BTCUSDT",
            "S": "Sell" if r["m"] else "Buy",
            "v": r["q"],
            "p": r["p"],
            "i": str(r["t"]),
            "BT": False,
            "seq": r["t"],
        }
        for r in rows
    ]
    msg = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": rows[-1]["E"], "data": data}
    return json.dumps(msg, separators=(",", ":")).encode()


def fold_frames(frames: list[bytes], end: int) -> tuple[list[Output], int]:
    parser = BybitParser("linear", REGISTRY, depth=50)
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    out: list[Output] = []
    for recv_ns, f in enumerate(frames):
        for pub in parser.parse(recv_ns, f):
            assert pub.kind == "trades"
            out.extend(fold.step(state, "trades", pub.msg))
    out.extend(fold.step(state, "trades", Heartbeat(end, end, "feed")))
    return out, parser.counters["trades"]


def real_prefix(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _, obj in binance_lines(require(BINANCE_SPOT)):
        d = obj.get("data", obj)
        if d.get("e") == "trade":
            out.append(d)
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="module")
def real_trades() -> list[dict[str, Any]]:
    return real_prefix(1500)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_real_trades_batched_into_frames_any_way_fold_the_same(
    real_trades: list[dict[str, Any]], data: st.DataObject
) -> None:
    n = len(real_trades)
    assert n == 1500
    end = real_trades[-1]["T"] * MS + DAY  # closes every bar and the session
    one_each, count = fold_frames([frame([t]) for t in real_trades], end)
    assert count == n
    assert any(k == "bars" and getattr(m, "final", False) for k, m in one_each)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=200)))
    edges = [0, *cuts, n]
    batched, count = fold_frames(
        [frame(real_trades[a:b]) for a, b in itertools.pairwise(edges)], end
    )
    assert count == n
    assert by_kind(batched) == by_kind(one_each)


# --- whole read batches through step_batch -----------------------------------------------------


def step_each(items: list[tuple[str, Message]], cuts: set[int]) -> list[Sequence[Output]]:
    """The reference: ``step`` per message, a checkpoint and restore before each index in
    ``cuts``; one output sequence per message."""
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    out: list[Sequence[Output]] = []
    for i, (kind, msg) in enumerate(items):
        if i in cuts:
            fold, state = restored(fold, state)
        out.append(list(fold.step(state, kind, msg, EntryId(i + 1, 0))))
    return out


def restored(fold: AnalyticsFold, state: AnalyticsState) -> tuple[AnalyticsFold, AnalyticsState]:
    data = fold.encode_state(state)
    fresh = AnalyticsFold(REGISTRY)
    return fresh, fresh.decode_state(data)


def step_batches(items: list[tuple[str, Message]], cuts: set[int]) -> list[Sequence[Output]]:
    """``step_batch`` over runs of one kind, each run split at ``cuts`` (where the state is also
    checkpointed and restored), as the stage hands a read over."""
    fold = AnalyticsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    out: list[Sequence[Output]] = []
    start = 0
    for i in range(1, len(items) + 1):
        if i < len(items) and items[i][0] == items[start][0] and i not in cuts:
            continue
        run = [(EntryId(j + 1, 0), items[j][1]) for j in range(start, i)]
        results = fold.step_batch(state, items[start][0], run)
        assert len(results) == len(run)
        out.extend(list(r) for r in results)
        if i in cuts:
            fold, state = restored(fold, state)
        start = i
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_trade, min_size=1, max_size=60),
    st.lists(_delta, max_size=40),
    st.lists(st.tuples(st.booleans(), st.integers(1, 12)), max_size=30),
    st.sets(st.integers(1, 200), max_size=12),
)
def test_step_batch_gives_each_message_the_outputs_of_step(
    rows: list[tuple[int, int, int, bool, bool]],
    deltas: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]], bool]],
    reads: list[tuple[bool, int]],
    cuts: set[int],
) -> None:
    trades, book = trades_stream(rows), book_stream(deltas)
    order: list[tuple[str, Message]] = []
    ti = bi = 0
    for from_trades, n in [*reads, (True, len(trades)), (False, len(book))]:
        if from_trades:
            order += [("trades", m) for m in trades[ti : ti + n]]
            ti = min(ti + n, len(trades))
        else:
            order += [("book", m) for m in book[bi : bi + n]]
            bi = min(bi + n, len(book))
    reference = step_each(order, cuts)
    assert any(k == "bars" for out in reference for k, *_ in out)
    # Per message, not per stream: the stage derives each output's ID from the message it holds.
    assert [[codec.encode(o[1]) for o in out] for out in step_batches(order, cuts)] == [
        [codec.encode(o[1]) for o in out] for out in reference
    ]
    assert [[(o[0], o[2:]) for o in out] for out in step_batches(order, cuts)] == [
        [(o[0], o[2:]) for o in out] for out in reference
    ]


def test_real_trades_in_reads_of_any_size_fold_as_one_by_one(
    real_trades: list[dict[str, Any]],
) -> None:
    parser = BybitParser("linear", REGISTRY, depth=50)
    msgs: list[tuple[str, Message]] = [
        ("trades", pub.msg)
        for n, t in enumerate(real_trades)
        for pub in parser.parse(n, frame([t]))
    ]
    end = real_trades[-1]["T"] * MS + DAY
    msgs.append(("trades", Heartbeat(end, end, "feed")))
    reference = step_each(msgs, set())
    assert sum(1 for out in reference for k, m, *_ in out if k == "bars" and m.final) >= 5
    for cuts in ({1000}, set(range(7, len(msgs), 7)), set(range(250, len(msgs), 250))):
        batched = step_batches(msgs, cuts)
        assert [[codec.encode(o[1]) for o in out] for out in batched] == [
            [codec.encode(o[1]) for o in out] for out in reference
        ]
