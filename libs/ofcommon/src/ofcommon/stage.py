"""A stateful stage: folds each owned instrument's input streams, publishes, checkpoints.

The fold is pure (state, message) -> outputs; this module is the wiring that makes it exactly-once
across crashes: fenced reads, inputs folded in entry-ID order, outputs with IDs derived from inputs
(or anchored), fenced checkpoint + ack.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar, runtime_checkable

import msgspec
from redis.exceptions import RedisError

from ofcommon import entry_ids, keys, metrics
from ofcommon.bus import (
    LAG_COUNT_CAP,
    LAG_REPORT_S,
    DeadLetters,
    Producer,
    Redis,
    decode_fields,
    decode_value,
    ensure_group,
    observe_lag,
)
from ofcommon.checkpoint import SNAPSHOT_VERSION, Fence, Fenced, Snapshot
from ofcommon.deliveries import MAX_DELIVERIES, poison_reason
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import Gap, Message
from ofcommon.ownership import Coordinator, Lease
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.trims import Trimmed, TrimWatch

log = logging.getLogger(__name__)

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

Output = tuple[str, Message] | tuple[str, Message, EntryId]
"""What a fold step returns per output: (stream kind, message), or with a third element, an
*anchor*: the output's ID is then the anchor (or the next ID above the stream's last) instead of
one derived from the input entry. A fold anchors outputs that a later input may release (e.g. a
consumption event resolved when the other stream catches up) at the input that caused them, so
their IDs do not depend on which input happened to release them."""

OutputsHook = Callable[[str, list[tuple[str, Message]]], Awaitable[None]]
"""Awaited with (symbol, a batch's outputs) before they are published and the batch is acked.
Outputs of a kind in the fold's ``hook_only`` (a frozenset attribute, optional) reach the hook
only: they are never published (e.g. the inputs a journal records as they are consumed).

Raising fails the instrument's worker, which restarts from its last checkpoint and so calls the
hook again with the same outputs: at-least-once, so the hook must be idempotent."""


def assign_ids(
    outputs: Iterable[Output],
    input_id: EntryId,
    last: dict[str, EntryId],
    stream_of: Callable[[str], str] = str,
) -> list[tuple[str, EntryId, Message]]:
    """The entry IDs of one input's outputs, as (output stream, ID, message); ``last`` holds each
    output stream's last ID and is updated. Pure: a re-run from a checkpoint repeats the IDs.

    ``stream_of`` names the output stream of an output kind (the key of ``last``)."""
    result = []
    index: dict[str, int] = {}
    for output in outputs:
        stream, msg = stream_of(output[0]), output[1]
        prev = last.get(stream, entry_ids.ZERO)
        if len(output) == 3:
            anchor = output[2]
            out_id = anchor if anchor > prev else prev.next()
        else:
            i = index.get(stream, 0)
            index[stream] = i + 1
            out_id = entry_ids.derive(input_id, i, prev)
        last[stream] = out_id
        result.append((stream, out_id, msg))
    return result


@dataclass(frozen=True, slots=True)
class Rebuilt(Generic[S]):
    """A fold state rebuilt from outside the checkpoint (a database, the streams).

    ``positions`` maps input stream keys to the last entry ID already folded into ``state``; the
    worker goes on after them (a stream left out is read from its pending list, as without state).
    """

    state: S
    positions: dict[str, str]


Rebuild = Callable[[str, Redis], Awaitable[Rebuilt[S] | None]]
"""Awaited with (symbol, redis) when an instrument has no usable checkpoint; None = start empty."""


class Fold(Protocol[S]):
    """The pure logic of a stage, per instrument.

    ``step`` may update ``state`` in place and returns the outputs caused by one input message (of
    entry ``at`` on the input stream ``kind``) as ``Output`` tuples. It must be deterministic: no
    clock, no randomness, no I/O. If it raises, the stage throws the state away (it may hold part
    of the message), dead-letters the message and re-folds from the last checkpoint without it.
    An output stream gets either only anchored outputs or none: mixing the two would make IDs
    depend on the order they were released in.
    """

    stage: str
    inputs: tuple[str, ...]

    def initial(self, symbol: str) -> S: ...

    def step(
        self, state: S, kind: str, msg: Message, at: EntryId = entry_ids.ZERO
    ) -> Sequence[Output]: ...

    def encode_state(self, state: S) -> bytes: ...

    def decode_state(self, data: bytes) -> S: ...


Item = tuple[EntryId, Message]
"""One input of a batch: the entry ID on its input stream and the decoded message."""


class StepFailed(Exception):
    """``step_batch`` failed on ``items[index]`` (``cause``): the items before it are folded and
    ``done`` holds their outputs (one sequence per item); the items after it are not folded."""

    def __init__(self, index: int, cause: Exception, done: list[Sequence[Output]]) -> None:
        super().__init__(f"step failed on item {index}: {cause!r}")
        self.index = index
        self.cause = cause
        self.done = done


@runtime_checkable
class BatchFold(Protocol[S_contra]):
    """Optional for a fold: ``Fold.step_batch(state, kind, items)``, the stage's (and the
    backtest's) entry point for a run of consecutive entries of one input stream.

    It must be equivalent to calling ``step(state, kind, msg, at)`` for each ``(at, msg)`` of
    ``items`` in order, returning the outputs of each item as one sequence per item (so output IDs
    still derive from the item that caused them), and raising ``StepFailed`` when an item fails.
    A fold implements it to amortise per-message work over the batch; ``step_batch`` below
    loops ``step`` for folds that do not."""

    def step_batch(
        self, state: S_contra, kind: str, items: Sequence[Item]
    ) -> list[Sequence[Output]]: ...


BatchStep = Callable[[S, str, Sequence[Item]], list[Sequence[Output]]]


def batch_step(fold: Fold[S]) -> BatchStep[S]:
    """``fold.step_batch`` if the fold has one, else ``step`` over each item (see ``BatchFold``).
    Resolved once per fold: the protocol check costs far more than a batch of plain calls."""
    if isinstance(fold, BatchFold):
        own: BatchStep[S] = fold.step_batch
        return own
    step = fold.step

    def each(state: S, kind: str, items: Sequence[Item]) -> list[Sequence[Output]]:
        done: list[Sequence[Output]] = []
        for index, (at, msg) in enumerate(items):
            try:
                done.append(step(state, kind, msg, at))
            except Exception as err:
                raise StepFailed(index, err, done) from err
        return done

    return each


def step_batch(fold: Fold[S], state: S, kind: str, items: Sequence[Item]) -> list[Sequence[Output]]:
    """One batch through ``batch_step(fold)``: one sequence of outputs per item, ``StepFailed``
    on the first failing item (a backtest's entry point; a stage keeps ``batch_step``'s)."""
    return batch_step(fold)(state, kind, items)


@runtime_checkable
class Tallies(Protocol[S_contra]):
    """Optional for a fold: tallies kept in its state, exported as ``of_fold_events`` gauges at
    every checkpoint (they are restored with the state, so a restart does not reset them)."""

    def tallies(self, state: S_contra) -> Mapping[str, float]: ...


class StructStateFold(Generic[S]):
    """Mixin: state snapshots as msgpack of a msgspec Struct type ``state_type``."""

    state_type: type[S]

    def encode_state(self, state: S) -> bytes:
        return msgspec.msgpack.encode(state)

    def decode_state(self, data: bytes) -> S:
        return msgspec.msgpack.decode(data, type=self.state_type)


GapKind = Literal["trades", "book"]
_GAP_KINDS: dict[str, GapKind] = {"trades": "trades", "book": "book"}  # inputs a Gap can name


class Rejected(Exception):
    """Raised by an ``OutputsHook``: output ``index`` of the batch can never be taken (a
    permanent error such as a row the database refuses). The input that produced it is
    dead-lettered with ``reason`` and the instrument goes on without it."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"output {index} rejected: {reason}")
        self.index = index
        self.reason = reason


class Refold(Exception):
    """A worker's state may hold part of a dead-lettered input: restart from the checkpoint."""


class StageTiming(msgspec.Struct, frozen=True):
    checkpoint_interval_s: float = 1.0
    checkpoint_every: int = 5000
    read_count: int = 1000
    block_ms: int = 1000
    max_deliveries: int = MAX_DELIVERIES
    release_timeout_s: float = 30.0  # a handed-back instrument's final checkpoint, at most


class InstrumentWorker(Generic[S]):
    """Runs a fold for one owned instrument until stopped, fenced out or cancelled."""

    def __init__(
        self,
        redis: Redis,
        fold: Fold[S],
        lease: Lease,
        *,
        service: str,
        timing: StageTiming,
        on_outputs: OutputsHook | None = None,
        rebuild: Rebuild[S] | None = None,
    ) -> None:
        self.symbol = lease.symbol
        self._on_outputs = on_outputs
        self._rebuild = rebuild
        self._redis = redis
        self._fold = fold
        self._step_batch = batch_step(fold)
        self._hook_only: frozenset[str] = getattr(fold, "hook_only", frozenset())
        self._service = service
        self._timing = timing
        self._inputs = {keys.stream(lease.symbol, k): k for k in fold.inputs}
        self._order = {s: n for n, s in enumerate(self._inputs)}  # ties of equal IDs: input order
        self._held: list[tuple[EntryId, str, str, Any]] = []
        self._poison: dict[tuple[str, str], int] = {}
        self._fence = Fence(
            redis,
            symbol=lease.symbol,
            stage=fold.stage,
            streams=list(self._inputs),
            lease_value=lease.value,
        )
        self._producer = Producer(redis, service=service)
        self._dead = DeadLetters(redis, service)
        self._trims = TrimWatch(redis, fold.stage, service=service, cap=LAG_COUNT_CAP)
        self._stopping = asyncio.Event()
        self._state: S = fold.initial(lease.symbol)
        self._positions: dict[str, str] = {}
        self._position_ids: dict[str, EntryId] = {}
        self._last_out: dict[str, EntryId] = {}
        self._out_streams: dict[str, str] = {}
        self._entries = 0
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._next_lag_report = 0.0
        self.folded = 0

    def _out_stream(self, kind: str) -> str:
        stream = self._out_streams.get(kind)
        if stream is None:
            stream = self._out_streams[kind] = keys.stream(self.symbol, kind)
        return stream

    def stop(self) -> None:
        """Ask for a clean stop: finish the current batch, checkpoint, return."""
        self._stopping.set()

    async def run(self) -> None:
        try:
            await self._restore()
            cursors = {s: self._positions.get(s, "0-0") for s in self._inputs}
            await self._drain_pending(cursors)
            await self._follow()
            await self.checkpoint()
        except Fenced as err:
            log.warning("%s", err)
            metrics.CHECKPOINTS.labels(self._service, "fenced").inc()

    async def _restore(self) -> None:
        for stream in self._inputs:
            await ensure_group(self._redis, stream, self._fold.stage)
        snap = await self._fence.load()
        state = None if snap is None else self._decode(snap.state)
        if snap is not None and state is not None:
            self._state = state
            self._positions = dict(snap.positions)
            self._position_ids = {s: entry_ids.parse(p) for s, p in self._positions.items()}
            self._last_out = {k: entry_ids.parse(v) for k, v in snap.last_out.items()}
            self._entries = snap.entries
            log.info("%s restored at %s", self.symbol, snap.positions)
        elif self._rebuild is not None:
            rebuilt = await self._rebuild(self.symbol, self._redis)
            if rebuilt is not None:
                self._state = rebuilt.state
                self._positions = {s: p for s, p in rebuilt.positions.items() if s in self._inputs}
                self._position_ids = {s: entry_ids.parse(p) for s, p in self._positions.items()}
                log.warning("%s rebuilt without checkpoint, at %s", self.symbol, self._positions)
                # At once, so that a crash right after does not pay for the rebuild again.
                await self.checkpoint()

    def _decode(self, data: bytes) -> S | None:
        # A snapshot this code cannot read (another state version, a corrupt value) must not
        # crash-loop the worker: it counts as no state, which the rebuild hook (if any) repairs.
        try:
            return self._fold.decode_state(data)
        except (ValueError, msgspec.MsgspecError) as err:
            log.warning(
                "%s: unusable %s snapshot (%s), starting without it",
                self.symbol,
                self._fold.stage,
                err,
            )
            return None

    async def _drain_pending(self, cursors: dict[str, str]) -> None:
        # Entries delivered to this instrument's consumer but not covered by the snapshot: the
        # previous owner read them and died (or was fenced) before its checkpoint.
        while cursors and not self._stopping.is_set():
            careful = await self._careful_head(cursors)
            if careful is None:
                batch = await self._fence.read(cursors, self._timing.read_count)
            else:
                batch = await self._fence.read({careful: cursors[careful]}, 1)
            seen = set()
            for stream, entry_id, _ in batch:
                cursors[stream] = entry_id
                seen.add(stream)
            for stream in list(cursors):
                if stream not in seen and (careful is None or stream == careful):
                    del cursors[stream]
            await self._process(batch)
            if careful is not None and batch:
                await self.checkpoint()
        self._poison = {}

    async def _careful_head(self, cursors: Mapping[str, str]) -> str | None:
        """The stream whose oldest pending entry must be folded alone, or None for a bulk read.

        Re-reading the pending list is a delivery; an entry that kills the worker each time it is
        folded would come back at every restart, forever. Once an entry in the next read has
        been delivered ``max_deliveries`` times, entries go one at a time with a checkpoint after
        each, so the innocent ones are acknowledged; the entry found at the head again, having
        been delivered alone once more, is the culprit: it is dead-lettered (``_poison``)."""
        limit = self._timing.max_deliveries
        heads: list[tuple[EntryId, int, str, str, int]] = []
        suspect = False
        for stream, cursor in cursors.items():
            low = "-" if cursor == "0-0" else f"({cursor}"
            info = await self._redis.xpending_range(
                stream,
                self._fold.stage,
                min=low,
                max="+",
                count=self._timing.read_count,
                consumername=self.symbol,
            )
            if not info:
                continue
            suspect = suspect or any(int(i["times_delivered"]) >= limit for i in info)
            head = info[0]
            head_id = head["message_id"]
            head_id = head_id.decode() if isinstance(head_id, bytes) else str(head_id)
            parsed = entry_ids.parse(head_id)
            times = int(head["times_delivered"])
            heads.append((parsed, self._order[stream], stream, head_id, times))
        if not suspect or not heads:
            return None
        _, _, stream, head_id, times = min(heads)
        if times > limit:
            self._poison = {(stream, head_id): times + 1}
        return stream

    async def _follow(self) -> None:
        await self._check_trims()
        cursors = dict.fromkeys(self._inputs, ">")
        while not self._stopping.is_set():
            # A stream with entries still held is not read further until they have gone: read
            # on, a sparse stream would pile up held entries faster than they are released.
            waiting = {e[1] for e in self._held}
            batch = await self._fence.read(
                {s: c for s, c in cursors.items() if s not in waiting} if waiting else cursors,
                self._timing.read_count,
            )
            if batch or self._held:  # held entries go as soon as nothing older can come
                await self._process(batch, waiting)
            else:
                await self._maybe_checkpoint()
                await self._wait_for_data()

    async def _wait_for_data(self) -> None:
        # A plain XREAD (no group, no side effect) blocks until something newer than what this
        # instrument has consumed arrives; the fenced XREADGROUP then takes it.
        waiter = asyncio.ensure_future(
            self._redis.xread(
                {s: self._positions.get(s, "$") for s in self._inputs},
                count=1,
                block=self._timing.block_ms,
            )
        )
        stopper = asyncio.ensure_future(self._stopping.wait())
        done, pending = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if waiter in done:
            waiter.result()

    def _release(
        self, batch: list[tuple[str, str, Any]], unread: Collection[str] = ()
    ) -> list[tuple[EntryId, str, str, Any]]:
        """The entries to fold now, in entry-ID order across the input streams.

        A stream that filled its read (``read_count`` entries) may hold more: entries of the other
        streams past its last one wait (``_held``, read but not acknowledged) until it has been
        read that far. So a backlog is folded in the order it arrived, as live data is, and the
        event time of one input never runs far ahead of another's (folds that relate two inputs,
        like trades and book, need that); a single input is folded as read. A stream left out
        of this read (``unread``: its held entries wait) may hold more past its last held entry.
        """
        parse = entry_ids.parse
        entries = [(parse(i), s, i, f) for s, i, f in batch]
        if len(self._inputs) == 1:
            return entries
        limit: EntryId | None = None
        counts = Counter(s for s, _, _ in batch)
        for stream, n in counts.items():
            if n >= self._timing.read_count:
                last = max(e[0] for e in entries if e[1] == stream)
                limit = last if limit is None or last < limit else limit
        for stream in unread:
            last = max(e[0] for e in self._held if e[1] == stream)
            limit = last if limit is None or last < limit else limit
        merged = self._held + entries
        if len(counts) > 1 or self._held:
            # Sorted as (ID, input order) tuples, compared natively: one stream's IDs are
            # distinct, so the comparison never reaches the entry itself. A key function per
            # entry cost more than the rest of the merge.
            order = self._order
            keyed = sorted([(e[0], order[e[1]], n) for n, e in enumerate(merged)])
            merged = [merged[n] for _, _, n in keyed]
        if limit is None:
            self._held = []
            return merged
        cut = bisect.bisect_right(merged, limit, key=itemgetter(0))
        self._held = merged[cut:]
        return merged[:cut]

    async def _process(
        self, batch: list[tuple[str, str, Any]], unread: Collection[str] = ()
    ) -> None:
        released = self._release(batch, unread)
        if not released:
            return
        arrival_ms: list[int] = []
        produced: list[tuple[str, Message]] = []
        sources: list[tuple[int, str, str, Any]] = []  # per input with outputs: end in produced
        # Consecutive entries of one input stream go to the fold as one batch (``step_batch``);
        # a stream change in the merged order starts the next run.
        run_stream = ""
        run: list[tuple[str, bytes | None, Item]] = []
        for input_id, stream, entry_id, fields in released:
            position = self._position_ids.get(stream)
            if position is not None and input_id <= position:
                continue  # already folded into the snapshot
            self._positions[stream] = entry_id
            self._position_ids[stream] = input_id
            self._entries += 1
            self._since_checkpoint += 1
            msg, raw, reason = decode_value(fields)
            if self._poison and (stream, entry_id) in self._poison:
                msg, reason = None, poison_reason(self._poison[(stream, entry_id)])
            if msg is None:
                await self._fold_run(run_stream, run, produced, sources, arrival_ms)
                run = []
                await self._dead.send(stream, entry_id, reason, raw)
                continue
            if stream != run_stream:
                await self._fold_run(run_stream, run, produced, sources, arrival_ms)
                run, run_stream = [], stream
            run.append((entry_id, raw, (input_id, msg)))
        await self._fold_run(run_stream, run, produced, sources, arrival_ms)
        metrics.MESSAGES_IN.labels(self._service, "input").inc(len(released))
        if self._on_outputs is not None and produced:
            await self._hand_outputs(produced, sources)
        await self._producer.flush()
        if arrival_ms:
            now_ms = time.time() * 1000
            # Entries of one arrival millisecond have one latency: observed together.
            latency: Counter[float] = Counter()
            for ms, n in Counter(arrival_ms).items():
                latency[max(now_ms - ms, 0.0) / 1000] += n
            metrics.observe_counts(metrics.LATENCY.labels(self._service), latency)
        await self._maybe_checkpoint()

    async def _fold_run(
        self,
        stream: str,
        run: list[tuple[str, bytes | None, Item]],
        produced: list[tuple[str, Message]],
        sources: list[tuple[int, str, str, Any]],
        arrival_ms: list[int],
    ) -> None:
        """Fold a run of one stream's entries and queue their outputs. A failing step (or an
        output that cannot be queued) re-folds the batch without the culprit (``_refold_without``).
        """
        if not run:
            return
        items = [item for _, _, item in run]
        failed: StepFailed | None = None
        try:
            results = self._step_batch(self._state, self._inputs[stream], items)
        except StepFailed as err:  # a bug or a message the fold rejects
            results, failed = err.done, err
        add, last_out, out_stream_of = self._producer.add, self._last_out, self._out_stream
        # The entries before a failed one first: one of their outputs may be the first culprit.
        for (entry_id, raw, (input_id, _)), outputs in zip(run, results, strict=False):
            arrival_ms.append(input_id.ms)
            if not outputs:  # most entries: skip the ID assignment's set-up
                continue
            published = self._published(outputs)
            try:
                for out_stream, out_id, out in assign_ids(
                    published, input_id, last_out, out_stream_of
                ):
                    add(out_stream, out, str(out_id))
            except Exception as err:  # an unencodable output
                log.exception("%s failed on %s %s", self._fold.stage, stream, entry_id)
                await self._refold_without(stream, entry_id, f"fold-error: {err!r}", raw)
            produced.extend((o[0], o[1]) for o in outputs)
            sources.append((len(produced), stream, entry_id, raw))
        self.folded += len(results)
        if failed is not None:
            entry_id, raw, _ = run[failed.index]
            log.error(
                "%s failed on %s %s", self._fold.stage, stream, entry_id, exc_info=failed.cause
            )
            await self._refold_without(stream, entry_id, f"fold-error: {failed.cause!r}", raw)

    def _published(self, outputs: Sequence[Output]) -> Sequence[Output]:
        """The outputs that go to streams: all but the fold's ``hook_only`` kinds."""
        if not self._hook_only:
            return outputs
        return [o for o in outputs if o[0] not in self._hook_only]

    async def _check_trims(self) -> None:
        """Fold a ``Gap`` where trimming took entries this instrument had not read yet, and put
        the same ``Gap`` on every output stream it publishes to (see ``trims.TrimWatch``).

        Checkpointed before the loss is settled, so a crash in between reports it again rather
        than not at all."""
        if self._held:  # entries of another input wait: the gap would be folded out of order
            return
        for stream, kind in self._inputs.items():
            found = await self._trims.check(stream)
            if found is None:
                continue
            gap_kind = _GAP_KINDS.get(kind)
            if gap_kind is not None:
                try:
                    await self._fold_gap(stream, gap_kind, found)
                except Exception as err:
                    # The fold failed on the Gap: settled (counted and logged) so the restart
                    # does not meet it again, and re-folded, as the state may hold part of it.
                    log.exception("%s failed on a trim Gap of %s", self._fold.stage, stream)
                    await self._trims.settle(found)
                    metrics.REFOLDS.labels(self._service).inc()
                    raise Refold(f"{self._fold.stage}/{self.symbol}: Gap on {stream}") from err
                await self.checkpoint()
            await self._trims.settle(found)

    async def _fold_gap(self, stream: str, kind: GapKind, found: Trimmed) -> None:
        ts = await self._event_time(stream, found.before, found.after)
        lost = "some" if found.lost is None else str(found.lost)
        reason = (
            f"trimmed: {lost} entries after {found.after} gone before {self._fold.stage} read them"
        )
        gap = Gap(ts, ts, kind, reason)
        at = entry_ids.parse(found.after)
        outputs: list[Output] = list(self._fold.step(self._state, kind, gap, at))
        outputs.extend((keys.parse_stream(s)[1], gap) for s in sorted(self._last_out))
        published = self._published(outputs)
        for out_stream, out_id, out in assign_ids(published, at, self._last_out, self._out_stream):
            self._producer.add(out_stream, out, str(out_id))
        if self._on_outputs is not None:
            await self._on_outputs(self.symbol, [(o[0], o[1]) for o in outputs])

    async def _event_time(self, stream: str, first: str, after: str) -> int:
        """The event time of the first entry after a gap; else the arrival of the last one
        before it (entry IDs are arrival milliseconds)."""
        if first:
            reply: Any = await self._redis.xrange(stream, min=first, max=first, count=1)
            for _, fields in reply or ():
                msg = decode_fields(fields)[0]
                ts = getattr(msg, "ts_event", None)
                if isinstance(ts, int):
                    return ts
        return entry_ids.parse(after).ms * 1_000_000

    async def _hand_outputs(
        self, produced: list[tuple[str, Message]], sources: list[tuple[int, str, str, Any]]
    ) -> None:
        """The batch's outputs to the hook; ``sources`` maps them back to their inputs (the end
        of each input's outputs in ``produced``, its stream, ID and raw value)."""
        hook = self._on_outputs
        if hook is None:
            return
        try:
            await hook(self.symbol, produced)
        except Rejected as err:
            if not 0 <= err.index < len(produced):
                raise RuntimeError(f"{err} names no output of the batch") from err
            at = bisect.bisect_right(sources, err.index, key=lambda src: src[0])
            _, stream, entry_id, raw = sources[at]
            await self._refold_without(stream, entry_id, f"rejected: {err.reason}", raw)

    async def _refold_without(
        self, stream: str, entry_id: str, reason: str, raw: bytes | None
    ) -> NoReturn:
        """Dead-letter (and ack) the culprit, then give up this worker: its state may hold part
        of the culprit. The next one restores the checkpoint and re-folds the unacknowledged
        inputs without it; their outputs get the same IDs and are refused as duplicates.

        All-or-nothing at no cost per entry: nothing is copied unless a step fails."""
        await self._dead.send(stream, entry_id, reason, raw)
        await self._redis.xack(stream, self._fold.stage, entry_id)
        metrics.REFOLDS.labels(self._service).inc()
        raise Refold(f"{self._fold.stage}/{self.symbol}: {stream} {entry_id} {reason}")

    async def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now >= self._next_lag_report:
            self._next_lag_report = now + LAG_REPORT_S
            for stream in self._inputs:
                await observe_lag(self._redis, self._service, stream, self._fold.stage)
            await self._check_trims()
        due = now - self._last_checkpoint >= self._timing.checkpoint_interval_s
        if self._since_checkpoint and (
            due or self._since_checkpoint >= self._timing.checkpoint_every
        ):
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Flush outputs, then save state + positions and ack the inputs they cover."""
        await self._producer.flush()
        snap = Snapshot(
            version=SNAPSHOT_VERSION,
            positions=dict(self._positions),
            last_out={k: str(v) for k, v in self._last_out.items()},
            state=self._fold.encode_state(self._state),
            entries=self._entries,
        )
        await self._fence.checkpoint(snap)
        metrics.CHECKPOINTS.labels(self._service, "ok").inc()
        if isinstance(self._fold, Tallies):
            for name, value in self._fold.tallies(self._state).items():
                metrics.FOLD_EVENTS.labels(self._service, self.symbol, name).set(value)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()


class OwnedStage(Generic[S]):
    """All owned instruments of one worker: a task per instrument, started and stopped by leases.

    A crashed instrument task (Redis hiccup, bug) is restarted from its last checkpoint after a
    pause, as long as the lease is still ours.
    """

    def __init__(
        self,
        redis: Redis,
        fold: Fold[S],
        *,
        service: str,
        timing: StageTiming,
        on_outputs: OutputsHook | None = None,
        rebuild: Rebuild[S] | None = None,
    ) -> None:
        self._redis = redis
        self._on_outputs = on_outputs
        self._rebuild = rebuild
        self._fold = fold
        self._service = service
        self._timing = timing
        self.workers: dict[str, InstrumentWorker[S]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._released: dict[str, asyncio.Event] = {}

    async def on_acquire(self, lease: Lease) -> None:
        released = self._released[lease.symbol] = asyncio.Event()
        self._tasks[lease.symbol] = asyncio.create_task(
            self._supervise(lease, released), name=f"{self._fold.stage}:{lease.symbol}"
        )

    async def _supervise(self, lease: Lease, released: asyncio.Event) -> None:
        while not released.is_set():
            worker = InstrumentWorker(
                self._redis,
                self._fold,
                lease,
                service=self._service,
                timing=self._timing,
                on_outputs=self._on_outputs,
                rebuild=self._rebuild,
            )
            self.workers[lease.symbol] = worker
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Refold as err:
                log.warning("%s; re-folding from the checkpoint without it", err)
            except Exception:
                log.exception(
                    "%s/%s crashed; restarting from checkpoint", self._fold.stage, lease.symbol
                )
                # A pause before the restart, cut short by a release: a crash-looping worker
                # (say, its database is not migrated) must not hold up a clean stop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), 1.0)

    async def on_release(self, lease: Lease) -> None:
        worker = self.workers.pop(lease.symbol, None)
        task = self._tasks.pop(lease.symbol, None)
        released = self._released.pop(lease.symbol, None)
        if released is not None:
            released.set()
        if worker is not None:
            worker.stop()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self._timing.release_timeout_s)
            except TimeoutError:
                task.cancel()
            except Exception:
                log.exception("%s/%s failed while stopping", self._fold.stage, lease.symbol)

    async def on_lost(self, lease: Lease) -> None:
        self.workers.pop(lease.symbol, None)
        self._released.pop(lease.symbol, None)
        task = self._tasks.pop(lease.symbol, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _HoldOnly:
    """Lease callbacks of a stage that owns instruments but has no fold yet."""

    async def on_acquire(self, lease: Lease) -> None:
        return None

    async def on_release(self, lease: Lease) -> None:
        return None

    async def on_lost(self, lease: Lease) -> None:
        return None


async def run_owned(
    ctx: ServiceContext[OwnedStageSettings],
    fold: Fold[Any] | None,
    *,
    on_outputs: OutputsHook | None = None,
    rebuild: Rebuild[Any] | None = None,
) -> None:
    """Take part in the stage's ownership and fold every owned instrument until ``ctx.stop``.

    With ``fold`` None the worker only holds leases (a stage whose logic is not built yet).
    ``on_outputs`` (see ``OutputsHook``) sees every batch's outputs before they are published;
    ``rebuild`` (see ``Rebuild``) recovers an instrument that has no usable checkpoint.
    """
    settings = ctx.settings
    registry = load_registry(settings.registry_file or None)
    eligible = [i.symbol for i in registry.select(settings.instruments)]
    timing = StageTiming(
        checkpoint_interval_s=settings.checkpoint_interval_s,
        checkpoint_every=settings.checkpoint_every,
        read_count=settings.read_count,
        block_ms=settings.block_ms,
        # Instruments are released concurrently when the worker leaves: their final checkpoints
        # must end within the stop the runner allows.
        release_timeout_s=settings.shutdown_timeout_s * 0.75,
    )
    handlers: OwnedStage[Any] | _HoldOnly = (
        _HoldOnly()
        if fold is None
        else OwnedStage(
            ctx.redis,
            fold,
            service=ctx.name,
            timing=timing,
            on_outputs=on_outputs,
            rebuild=rebuild,
        )
    )
    coordinator = Coordinator(
        ctx.redis,
        stage=fold.stage if fold is not None else ctx.name,
        worker_id=ctx.worker_id,
        eligible=eligible,
        on_acquire=handlers.on_acquire,
        on_release=handlers.on_release,
        on_lost=handlers.on_lost,
        tick_s=settings.membership_tick_s,
        lease_ttl_s=settings.lease_ttl_s,
        dead_after_s=settings.worker_dead_after_s,
    )

    def status() -> dict[str, Any]:
        return {
            "owned": sorted(coordinator.owned),
            "members": len(coordinator.members),
            "eligible": len(eligible),
        }

    ctx.status["owned"] = []
    try:
        while not ctx.stop.is_set():
            try:
                await coordinator.tick()
            except (OSError, RedisError) as err:  # Redis away: leases lapse, others take over
                log.warning("membership tick failed: %s", err)
            ctx.status.update(status())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), settings.membership_tick_s)
    finally:
        await coordinator.leave()
        ctx.status.update(status())


def lease_only_service(name: str, summary: str) -> Service[OwnedStageSettings]:
    """A stateful stage whose fold is not built yet: it owns instruments and does nothing more."""

    async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
        await run_owned(ctx, None)

    return Service(name=name, settings_type=OwnedStageSettings, main=main, summary=summary)
