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
