"""A stage's fold driven in one process as ``ofcommon.stage`` drives it live, without Redis.

Inputs merged in entry-ID order (ties: the fold's input order), runs of one input stream through
``step_batch``, output IDs by ``assign_ids``: the backtest and ``make score`` share this runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, NamedTuple, TypeVar

from ofcommon.entry_ids import EntryId
from ofcommon.messages import Message
from ofcommon.stage import Fold, Item, Output, StepFailed, assign_ids, batch_step

S = TypeVar("S")


class Entry(NamedTuple):
    """One stream entry: its ID, the stream kind (``trades``, ``bars``, …) and the message."""

    id: EntryId
    kind: str
    msg: Message


class DeadLetter(NamedTuple):
    """An input the fold refused (``step`` raised): the live stage dead-letters it likewise."""

    symbol: str
    kind: str
    id: EntryId
    reason: str


class InProcessStage(Generic[S]):
    """One fold over any number of instruments, each with its own state and output IDs.

    ``feed`` takes one instrument's entries as one read of the live stage would: it sorts them
    by (entry ID, input order), hands each run of consecutive entries of one input stream to the
    fold's ``step_batch`` in slices of at most ``batch`` items (the stage's ``read_count``), and
    returns the outputs with the IDs the stage derives. Entries of streams the fold does not read
    are skipped. A step that raises is a ``DeadLetter`` and the fold goes on with the next item
    (the live stage re-folds from its checkpoint without it: the same result for folds that
    refuse a message before changing their state, as the stages do).
    """

    def __init__(self, fold: Fold[S], batch: int = 1000) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.fold = fold
        self.batch = batch
        self.states: dict[str, S] = {}
        self.dead_letters: list[DeadLetter] = []
        self.folded = 0
        self._step = batch_step(fold)
        # outputs the live stage hands only to its hook (never published, so they take no ID)
        self._hook_only: frozenset[str] = getattr(fold, "hook_only", frozenset())
        self._order = {k: n for n, k in enumerate(fold.inputs)}
        self._last: dict[str, dict[str, EntryId]] = {}

    def state(self, symbol: str) -> S:
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = self.fold.initial(symbol)
        return state

    def feed(self, symbol: str, entries: Iterable[Entry]) -> list[Entry]:
        order = self._order
        mine = [e for e in entries if e.kind in order]
        if not mine:
            return []
        if len({e.kind for e in mine}) > 1:
            mine.sort(key=lambda e: (e.id, order[e.kind]))
        state = self.state(symbol)
        last = self._last.setdefault(symbol, {})
        out: list[Entry] = []
        start = 0
        n = len(mine)
        while start < n:
            kind = mine[start].kind
            end = start + 1
            limit = min(n, start + self.batch)
            while end < limit and mine[end].kind == kind:
                end += 1
            self._run(symbol, state, kind, mine[start:end], last, out)
            start = end
        return out

    def _run(
        self,
        symbol: str,
        state: S,
        kind: str,
        run: Sequence[Entry],
        last: dict[str, EntryId],
        out: list[Entry],
    ) -> None:
        items: list[Item] = [(e.id, e.msg) for e in run]
        while items:
            failed: StepFailed | None = None
            try:
                results: list[Sequence[Output]] = self._step(state, kind, items)
            except StepFailed as err:
                results, failed = err.done, err
            self.folded += len(results)
            hook_only = self._hook_only
            for (at, _), outputs in zip(items, results, strict=False):
                if hook_only:
                    outputs = [o for o in outputs if o[0] not in hook_only]
                if outputs:
                    out.extend(Entry(i, k, m) for k, i, m in assign_ids(outputs, at, last))
            if failed is None:
                return
            at = items[failed.index][0]
            reason = f"fold-error: {failed.cause!r}"
            self.dead_letters.append(DeadLetter(symbol, kind, at, reason))
            items = items[failed.index + 1 :]
