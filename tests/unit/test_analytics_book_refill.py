"""A refill marks the pending removals of its level it may explain, whatever order their book
deltas came in (the scan from the newest may stop early only while removals are in event-time
order), and after a checkpoint restore too.
"""

from __future__ import annotations

from of_analytics.book import BookEngine, BookParams, Resolved
from ofcommon.entry_ids import EntryId
from ofcommon.messages import BookDelta, BookSnapshot

S = 1_000_000_000


def consumption(engine: BookEngine, ts: int) -> list[tuple[int, float, bool]]:
    """(removal time, price, refilled) of every removal resolved once both streams reach
    ``ts``, in time order."""
    return sorted(
        (o.consumption.ts_event, o.consumption.price, o.consumption.refilled)
        for o in engine.advance(ts)
        if isinstance(o, Resolved)
    )


def book() -> BookEngine:
    engine = BookEngine(BookParams(row=1.0))
    bids = [(99.0 - k, 5.0) for k in range(5)]
    asks = [(101.0 + k, 5.0) for k in range(5)]
    engine.on_snapshot(BookSnapshot(0, 0, 1, bids, asks))
    return engine


def test_a_refill_marks_a_removal_queued_before_an_older_one() -> None:
    engine = book()
    # ask 101 cut from 5 to 2 at 5 s, then a delta stamped 1 s (out of order) takes the rest
    engine.on_delta(BookDelta(5 * S, 5 * S, 2, [], [(101.0, 2.0)]), EntryId(1, 0))
    engine.on_delta(BookDelta(1 * S, 1 * S, 3, [], [(101.0, 0.0)]), EntryId(2, 0))
    # ask 101 re-posted at 4 s: within the 1 s window of the 5 s removal, not of the 1 s one
    engine.on_delta(BookDelta(4 * S, 4 * S, 4, [], [(101.0, 5.0)]), EntryId(3, 0))
    assert consumption(engine, 60 * S) == [(1 * S, 101.0, False), (5 * S, 101.0, True)]


def test_in_order_removals_are_marked_as_before() -> None:
    engine = book()
    engine.on_delta(BookDelta(1 * S, 1 * S, 2, [], [(102.0, 0.0)]), EntryId(1, 0))
    engine.on_delta(BookDelta(5 * S, 5 * S, 3, [], [(101.0, 0.0)]), EntryId(2, 0))
    engine.on_delta(BookDelta(5 * S + S // 2, 5 * S + S // 2, 4, [], [(101.0, 5.0)]), EntryId(3, 0))
    engine.on_delta(BookDelta(9 * S, 9 * S, 5, [], [(102.0, 5.0)]), EntryId(4, 0))
    # the 102 re-post at 9 s is 8 s after its removal: too late to count as a refill
    assert consumption(engine, 60 * S) == [(1 * S, 102.0, False), (5 * S, 101.0, True)]


def test_a_restored_engine_marks_refills_of_removals_from_before_the_checkpoint() -> None:
    engine = book()
    engine.on_delta(BookDelta(1 * S, 1 * S, 2, [], [(101.0, 0.0), (102.0, 1.0)]), EntryId(1, 0))
    restored = BookEngine(BookParams(row=1.0))
    restored.restore(engine.to_state())
    restored.on_delta(
        BookDelta(1 * S + S // 2, 1 * S + S // 2, 3, [], [(102.0, 5.0)]), EntryId(2, 0)
    )
    # 102 went 5 -> 1 and back within the window; 101 was never re-posted
    assert consumption(restored, 60 * S) == [(1 * S, 101.0, False), (1 * S, 102.0, True)]


def _random_deltas(seed: int) -> list[tuple[int, bool, float, float]]:
    """(ts, is_bid, price, new size) of random resizes of a wide book, some out of time order:
    every level keeps a size above zero and bids stay below asks, so each change is a removal
    (smaller) or a refill (larger) inside the window."""
    import random

    rng = random.Random(seed)
    out = []
    ts = 10 * S
    for _ in range(600):
        ts += rng.randrange(0, S // 4)
        at = ts - rng.randrange(0, 2 * S) if rng.random() < 0.1 else ts  # a few stamped early
        is_bid = rng.random() < 0.5
        price = (99.0 - rng.randrange(3)) if is_bid else (101.0 + rng.randrange(3))
        out.append((at, is_bid, price, float(rng.randrange(1, 8))))
    return out


def test_refill_marks_match_a_plain_reference_on_random_books() -> None:
    """Whatever the order of the deltas and wherever a checkpoint falls, a removal is refilled
    exactly when a later delta grows its level again within the window of its time."""
    w = BookParams(row=1.0).match_window_ns
    for seed in range(12):
        deltas = _random_deltas(seed)
        engine = BookEngine(BookParams(row=1.0, rows=1000))
        bids = [(99.0 - k, 5.0) for k in range(3)]
        asks = [(101.0 + k, 5.0) for k in range(3)]
        engine.on_snapshot(BookSnapshot(0, 0, 1, bids, asks))
        size = {(True, p): s for p, s in bids} | {(False, p): s for p, s in asks}
        removals: list[tuple[int, int, bool, float]] = []  # arrival, ts, is_bid, price
        refills: list[tuple[int, int, bool, float]] = []
        for n, (ts, is_bid, price, new) in enumerate(deltas):
            if n == 300:  # a checkpoint and restore in the middle
                restored = BookEngine(BookParams(row=1.0, rows=1000))
                restored.restore(engine.to_state())
                engine = restored
            old = size[(is_bid, price)]
            size[(is_bid, price)] = new
            if new < old:
                removals.append((n, ts, is_bid, price))
            elif new > old:
                refills.append((n, ts, is_bid, price))
            change = [(price, new)]
            delta = BookDelta(ts, ts, n + 2, change if is_bid else [], [] if is_bid else change)
            engine.on_delta(delta, EntryId(n + 1, 0))
        expected = sorted(
            (
                ts,
                price,
                any(m > n and b == is_bid and p == price and t <= ts + w for m, t, b, p in refills),
            )
            for n, ts, is_bid, price in removals
        )
        assert consumption(engine, 10**6 * S) == expected, seed
