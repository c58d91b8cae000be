"""Redis stream entry IDs as numbers: parse, compare, derive output IDs from input IDs.

Deriving output IDs from input IDs makes a re-run after a crash rewrite the very same IDs, which
Redis refuses as duplicates; that is how stages publish exactly once.
"""

from __future__ import annotations

from typing import Final, NamedTuple

FANOUT: Final = 1024  # outputs per input entry that keep a purely derived ID


class EntryId(NamedTuple):
    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def next(self) -> EntryId:
        return EntryId(self.ms, self.seq + 1)


ZERO: Final = EntryId(0, 0)


def parse(value: str | bytes) -> EntryId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, sep, seq = text.partition("-")
    try:
        return EntryId(int(ms), int(seq) if sep else 0)
    except ValueError:
        raise ValueError(f"not a stream entry id: {text!r}") from None


def derive(input_id: EntryId, index: int, last: EntryId) -> EntryId:
    """The ID of output ``index`` caused by ``input_id``, strictly above ``last``.

    Deterministic in (input, index, last), so a replay from the same checkpoint repeats it.
    """
    candidate = EntryId(input_id.ms, input_id.seq * FANOUT + min(index, FANOUT - 1))
    return candidate if candidate > last else last.next()


def from_receive_time(recv_ns: int, index: int, last: EntryId) -> EntryId:
    """The ID of output ``index`` of the frame received at ``recv_ns``, strictly above ``last``.

    The millisecond and the nanoseconds within it both come from the receive time, so the ID of
    a frame does not depend on which frames came before it: a recording split into parts and
    replayed part by part gets the same IDs as one replay of the whole.
    """
    ms, sub_ms = divmod(recv_ns, 1_000_000)
    candidate = EntryId(ms, sub_ms * FANOUT + min(index, FANOUT - 1))
    return candidate if candidate > last else last.next()


class ReceiveIds:
    """Entry IDs from receive times, per stream (``ofx replay --ids derived``, the backtest):
    message ``index`` of a frame received at ``recv_ns`` is the index-th on its stream at that
    receive time, and a receive clock that steps back takes the next sequence number."""

    __slots__ = ("_frame", "_last")

    def __init__(self) -> None:
        self._last: dict[str, EntryId] = {}
        self._frame: dict[str, tuple[int, int]] = {}  # stream -> (recv_ns, outputs so far)

    def next(self, stream: str, recv_ns: int) -> EntryId:
        last_recv, index = self._frame.get(stream, (-1, 0))
        index = index + 1 if recv_ns == last_recv else 0
        self._frame[stream] = (recv_ns, index)
        # from_receive_time, inlined: this runs once per message of a backtest
        ms, sub_ms = divmod(recv_ns, 1_000_000)
        entry_id = EntryId(ms, sub_ms * FANOUT + (index if index < FANOUT else FANOUT - 1))
        last = self._last.get(stream)
        if last is not None and not entry_id > last:
            entry_id = EntryId(last.ms, last.seq + 1)
        self._last[stream] = entry_id
        return entry_id
