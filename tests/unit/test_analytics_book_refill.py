"""A refill marks the pending removals it may explain, whatever order their book deltas came in:
the scan from the newest removal may stop early only while removals are in event-time order.
"""

from __future__ import annotations

from of_analytics.book import BookEngine, BookParams, Resolved
from ofcommon.entry_ids import EntryId
from ofcommon.messages import BookDelta, BookSnapshot

S = 1_000_000_000


def consumption(engine: BookEngine, ts: int) -> dict[float, bool]:
    """Price -> refilled of every removal resolved once both streams reach ``ts``."""
    return {
        o.consumption.price: o.consumption.refilled
        for o in engine.advance(ts)
        if isinstance(o, Resolved)
    }


def book() -> BookEngine:
    engine = BookEngine(BookParams(row=1.0))
    bids = [(99.0 - k, 5.0) for k in range(5)]
    asks = [(101.0 + k, 5.0) for k in range(5)]
    engine.on_snapshot(BookSnapshot(0, 0, 1, bids, asks))
    return engine


def test_a_refill_marks_a_removal_queued_before_an_older_one() -> None:
    engine = book()
    # ask 101 emptied at 5 s, then a delta stamped 1 s (out of order) empties ask 102
    engine.on_delta(BookDelta(5 * S, 5 * S, 2, [], [(101.0, 0.0)]), EntryId(1, 0))
    engine.on_delta(BookDelta(1 * S, 1 * S, 3, [], [(102.0, 0.0)]), EntryId(2, 0))
    # ask 101 re-posted at 4 s: within the 1 s window of the 5 s removal, not of the 1 s one
    engine.on_delta(BookDelta(4 * S, 4 * S, 4, [], [(101.0, 5.0)]), EntryId(3, 0))
    assert consumption(engine, 60 * S) == {101.0: True, 102.0: False}


def test_in_order_removals_are_marked_as_before() -> None:
    engine = book()
    engine.on_delta(BookDelta(1 * S, 1 * S, 2, [], [(102.0, 0.0)]), EntryId(1, 0))
    engine.on_delta(BookDelta(5 * S, 5 * S, 3, [], [(101.0, 0.0)]), EntryId(2, 0))
    engine.on_delta(BookDelta(5 * S + S // 2, 5 * S + S // 2, 4, [], [(101.0, 5.0)]), EntryId(3, 0))
    engine.on_delta(BookDelta(9 * S, 9 * S, 5, [], [(102.0, 5.0)]), EntryId(4, 0))
    # the 102 re-post at 9 s is 8 s after its removal: too late to count as a refill
    assert consumption(engine, 60 * S) == {101.0: True, 102.0: False}
