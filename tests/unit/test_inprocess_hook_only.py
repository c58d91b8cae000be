"""The in-process runner publishes what the live stage publishes: a fold's ``hook_only`` outputs
(handed to the live stage's hook, never to a stream) take no ID and are not returned."""

from __future__ import annotations

from collections.abc import Sequence

from ofcommon import entry_ids
from ofcommon.entry_ids import EntryId
from ofcommon.inprocess import Entry, InProcessStage
from ofcommon.messages import Heartbeat, Message
from ofcommon.stage import Output


class _Echo:
    """Each heartbeat gives one ``out`` and one hook-only ``journal`` output."""

    stage = "echo"
    inputs = ("trades",)
    hook_only = frozenset({"journal"})

    def initial(self, symbol: str) -> list[int]:
        return []

    def step(
        self, state: list[int], kind: str, msg: Message, at: EntryId = entry_ids.ZERO
    ) -> Sequence[Output]:
        assert isinstance(msg, Heartbeat)
        return [("journal", msg), ("out", msg)]

    def encode_state(self, state: list[int]) -> bytes:
        return b""

    def decode_state(self, data: bytes) -> list[int]:
        return []


def test_hook_only_outputs_are_neither_returned_nor_numbered() -> None:
    stage: InProcessStage[list[int]] = InProcessStage(_Echo())
    ids = [entry_ids.parse(f"{1000 + n}-0") for n in range(3)]
    entries = [
        Entry(i, "trades", Heartbeat(ts_event=n, ts_recv=n, source="test"))
        for n, i in enumerate(ids)
    ]
    out = stage.feed("BTCUSDT", entries)
    assert [e.kind for e in out] == ["out"] * 3
    # one output per input: the output ID is the input's (no sequence taken by the hook's)
    assert [str(e.id) for e in out] == [str(i) for i in ids]
