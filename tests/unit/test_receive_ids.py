"""``ReceiveIds``: the entry IDs of ``ofx replay --ids derived`` and the backtest, against the rule
docs/replay.md states: the receive millisecond, then the nanoseconds within it × 1024 plus the
message's index among the stream's messages of that receive time; a clock that steps back takes
the next sequence number."""

from __future__ import annotations

import itertools

from ofcommon.entry_ids import EntryId, ReceiveIds


def test_ids_follow_the_documented_rule() -> None:
    ids = ReceiveIds()
    t = 1_733_011_200_691_250_000
    assert ids.next("a", t) == EntryId(1_733_011_200_691, 250_000 * 1024)
    assert ids.next("a", t) == EntryId(1_733_011_200_691, 250_000 * 1024 + 1)  # same frame
    assert ids.next("b", t) == EntryId(1_733_011_200_691, 250_000 * 1024)  # streams apart
    later = t + 1_000_001
    assert ids.next("a", later) == EntryId(1_733_011_200_692, 250_001 * 1024)
    # the receive clock steps back: the next sequence number, IDs only grow
    assert ids.next("a", t) == EntryId(1_733_011_200_692, 250_001 * 1024 + 1)


def test_more_than_1024_messages_of_one_frame_keep_growing() -> None:
    ids = ReceiveIds()
    t = 5_000_000  # ms 5, 0 ns within it
    got = [ids.next("s", t) for _ in range(1030)]
    assert got[1023] == EntryId(5, 1023)
    assert got[1024:] == [EntryId(5, 1024 + n) for n in range(6)]
    assert all(a < b for a, b in itertools.pairwise(got))
