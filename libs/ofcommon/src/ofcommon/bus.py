"""The Redis Streams bus: batched producer, dead letters and the consumer-group reader.

Stateful, owned per-instrument reading lives in ``stage``; this module holds what every stage uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ofcommon import codec, entry_ids, keys, metrics, retention
from ofcommon.deliveries import MAX_DELIVERIES, over_delivered, poison_reason
from ofcommon.messages import Gap, Message
from ofcommon.trims import TrimWatch

log = logging.getLogger(__name__)

Redis = aioredis.Redis
_DUPLICATE_ID: Final = "equal or smaller than the target stream top item"
_TRIM_INTERVAL_S: Final = 60.0
# how far past its own entries a stream's tail is searched for what a lost round trip wrote
# (another producer may have added entries behind them since)
_UNSURE_SLACK: Final = 1_000
LAG_REPORT_S: Final = 5.0
LAG_COUNT_CAP: Final = 10_000  # lag and pending metrics, per stream, at most this often
# entries a producer keeps while Redis refuses writes (~60 B each on the wire, a few 100 B here)
MAX_BUFFER: Final = 200_000
_GAP_KINDS: Final = frozenset({"trades", "book"})  # the streams a Gap marker exists for
_DEAD_LETTER_IDENTITY: Final = (b"origin", b"origin_id", b"stage")
_DLQ_SCAN: Final = 20_000  # dead letters looked through for an earlier copy of one


class Entry(NamedTuple):
    """One stream entry, decoded. ``msg`` is None when it was dead-lettered instead."""

    stream: str
    id: str
    msg: Message | None
    raw: bytes | None


class FlushResult(NamedTuple):
    added: int
    duplicates: int
    holes: int = 0  # refused below the stream's top without being duplicates: not written


def _gap_stream(kind: str) -> Literal["trades", "book"]:
    return "trades" if kind == "trades" else "book"


def _time_span(encoded: Iterable[bytes]) -> tuple[int, int, int]:
    """(first event time, last event time, last receive time) of encoded messages; what does
    not decode counts as 0."""
    first = last = recv = 0
    for data in encoded:
        try:
            msg = codec.decode(data)
        except codec.DecodeError:
            continue
        ts = getattr(msg, "ts_event", 0)
        first = ts if not first else min(first, ts)
        last = max(last, ts)
        recv = max(recv, getattr(msg, "ts_recv", 0))
    return first, last, recv


def kind_of(stream: str) -> str:
    try:
        return keys.parse_stream(stream)[1]
    except ValueError:
        return "other"


def symbol_of(stream: str) -> str | None:
    try:
        return keys.parse_stream(stream)[0]
    except ValueError:
        return None


class WriteRefused(RedisError, RuntimeError):
    """Redis refused some writes (OOM, MISCONF, READONLY, ...). A producer still buffers every
    unwritten entry, in order, for the next flush."""


class _Loss:
    """What the bounded buffer dropped on one stream since its Gap was last written."""

    __slots__ = ("count", "first_event", "last_event", "last_id", "last_recv")

    def __init__(self) -> None:
        self.count = 0
        self.first_event = 0
        self.last_event = 0
        self.last_recv = 0
        self.last_id = "*"


class Producer:
    """Buffers entries and writes them in one pipelined round trip per flush.

    A flush that fails keeps every unwritten entry, in order, so a retried flush loses nothing:
    on a connection error the whole batch, on refused writes (OOM, MISCONF, READONLY) the refused
    entries, after which ``WriteRefused`` is raised. The buffer is bounded (``max_buffer``): past
    it the oldest entries are dropped, counted, and a ``Gap`` saying what was lost goes onto each
    trades/book stream concerned ahead of what is left.

    An explicit ID that Redis refuses as not above the stream's top is a duplicate only when that
    very ID already holds the same entry (a re-run rewriting what it wrote); any other refusal is
    a hole: counted, logged, and reported with a ``Gap`` on a trades/book stream.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        service: str = "",
        trim_by_age: bool = True,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, got {max_buffer}")
        self._redis = redis
        self._service = service
        self._buf: list[tuple[str, str, bytes]] = []
        self._max_buffer = max_buffer
        self._lost: dict[str, _Loss] = {}
        self._trim_by_age = trim_by_age
        self._written: set[str] = set()
        self._next_trim = time.monotonic() + _TRIM_INTERVAL_S
        self._targets: dict[str, tuple[bytes, bytes, str]] = {}  # stream -> key, maxlen, kind
        self._backlog = 0  # what this producer adds to the backlog gauge
        # entries at the head of the buffer sent in a round trip whose replies were lost: Redis
        # may have written some of them (a restart with AOF after it applied part of a pipeline)
        self._unsure = 0
        self.holes = 0  # refused entries that were not duplicates, since this producer started
        self.dropped = 0  # entries the bounded buffer gave up, since this producer started

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, stream: str, msg: Message, entry_id: str = "*") -> None:
        self._buf.append((stream, entry_id, codec.encode(msg)))
        if len(self._buf) > self._max_buffer:
            self._shed()

    def add_encoded(self, stream: str, data: bytes, entry_id: str = "*") -> None:
        """Add an already-encoded message (the ``d`` value)."""
        self._buf.append((stream, entry_id, data))
        if len(self._buf) > self._max_buffer:
            self._shed()

    async def publish(self, stream: str, msg: Message, entry_id: str = "*") -> FlushResult:
        if self._buf or self._lost:  # keep the order of what is already buffered
            self.add(stream, msg, entry_id)
            return await self.flush()
        key, maxlen, kind = self._target(stream)
        data = codec.encode(msg)
        try:  # one command, no pipeline: a one-command pipeline costs more than the XADD itself
            await self._redis.execute_command(  # type: ignore[no-untyped-call]
                b"XADD", key, b"MAXLEN", b"~", maxlen, entry_id, codec.FIELD, data
            )
        except ResponseError as err:
            if _DUPLICATE_ID in str(err):
                dups, holes = await self._sort_refused([(stream, entry_id, data)])
                return FlushResult(0, dups, holes)
            self._buf.append((stream, entry_id, data))
            self._note_backlog()
            metrics.WRITE_ERRORS.labels(self._service, kind).inc()
            raise WriteRefused(f"1 XADD refused, on {stream}: {err}") from err
        except BaseException:
            self._buf.append((stream, entry_id, data))  # as in flush: a retry loses nothing
            self._unsure = len(self._buf)
            self._note_backlog()
            raise
        metrics.MESSAGES_OUT.labels(self._service, kind).inc()
        self._written.add(stream)
        if self._trim_by_age and time.monotonic() >= self._next_trim:
            await self.trim_by_age()
        return FlushResult(1, 0)

    async def flush(self) -> FlushResult:
        if not self._buf and not self._lost:
            return FlushResult(0, 0)
        if self._unsure:
            await self._drop_written()
        gaps = self._loss_gaps()
        buf, self._buf = self._buf, []  # what is added during the round trip waits behind it
        batch = gaps + buf
        pipe = self._redis.pipeline(transaction=False)
        command = pipe.execute_command
        for stream, entry_id, data in batch:
            key, maxlen, _ = self._target(stream)
            command(b"XADD", key, b"MAXLEN", b"~", maxlen, entry_id, codec.FIELD, data)
        try:  # a connection error raises here: everything goes back, the losses stay recorded
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._buf = buf + self._buf
            self._unsure = len(buf)
            self._note_backlog()
            raise
        keep, refused, failures, added = self._sort_results(batch, len(gaps), results)
        self._buf = keep + self._buf
        self._written.update(added)
        for stream, count in added.items():
            metrics.MESSAGES_OUT.labels(self._service, self._target(stream)[2]).inc(count)
        dups, holes = await self._sort_refused(refused) if refused else (0, 0)
        self._note_backlog()
        if failures:
            for stream, _ in failures:
                metrics.WRITE_ERRORS.labels(self._service, self._target(stream)[2]).inc()
            stream, err = failures[0]
            raise WriteRefused(
                f"{len(failures)} XADD refused, first on {stream}: {err}"
                f" ({len(self._buf)} entries kept for the next flush)"
            ) from err
        if self._trim_by_age and time.monotonic() >= self._next_trim:
            await self.trim_by_age()
        return FlushResult(sum(added.values()), dups, holes)

    async def _drop_written(self) -> None:
        """Drop the entries of a round trip whose replies were lost that Redis did write, found
        on their streams by content: an auto-ID entry sent again would be written twice (an
        explicit ID is refused as a duplicate instead). Trades and book deltas carry their own
        ids and sequence numbers, so equal bytes are the same message."""
        n = min(self._unsure, len(self._buf))
        head = self._buf[:n]
        per: dict[str, int] = {}
        for stream, entry_id, _ in head:
            if entry_id == "*":
                per[stream] = per.get(stream, 0) + 1
        found: set[tuple[str, bytes]] = set()
        if per:
            pipe = self._redis.pipeline(transaction=False)
            for stream, count in per.items():
                pipe.xrevrange(stream, count=count + _UNSURE_SLACK)
            tails = await pipe.execute()
            for stream, tail in zip(per, tails, strict=True):
                for _, fields in tail:
                    data = (fields or {}).get(codec.FIELD)
                    if data is not None:
                        found.add((stream, data))
        kept = [e for e in head if e[1] != "*" or (e[0], e[2]) not in found]
        self._buf = kept + self._buf[n:]
        self._unsure = 0
        if len(kept) < n:
            log.warning(
                "%d of %d entries of a flush whose replies were lost were written: not sent again",
                n - len(kept),
                n,
            )

    def _note_backlog(self) -> None:
        """Keep the backlog gauge at what failed flushes left (summed over the process)."""
        n = len(self._buf)
        if n != self._backlog:
            metrics.BACKLOG.labels(self._service).inc(n - self._backlog)
            self._backlog = n

    def _sort_results(
        self, batch: Sequence[tuple[str, str, bytes]], n_gaps: int, results: Sequence[Any]
    ) -> tuple[
        list[tuple[str, str, bytes]],
        list[tuple[str, str, bytes]],
        list[tuple[str, BaseException]],
        dict[str, int],
    ]:
        """(entries to keep, entries refused below the top, failures, added per stream)."""
        keep: list[tuple[str, str, bytes]] = []
        refused: list[tuple[str, str, bytes]] = []
        failures: list[tuple[str, BaseException]] = []
        added: dict[str, int] = {}
        for k, (entry, result) in enumerate(zip(batch, results, strict=True)):
            stream = entry[0]
            failed = isinstance(result, BaseException)
            duplicate = isinstance(result, ResponseError) and _DUPLICATE_ID in str(result)
            if k < n_gaps:  # a loss's Gap: made again at the next flush unless it went in
                if not failed or duplicate:
                    self._lost.pop(stream, None)
            elif duplicate:
                refused.append(entry)
                continue
            elif failed:
                keep.append(entry)
            if failed and not duplicate:
                failures.append((stream, result))
            elif not failed:
                added[stream] = added.get(stream, 0) + 1
        return keep, refused, failures, added

    async def _sort_refused(self, refused: Sequence[tuple[str, str, bytes]]) -> tuple[int, int]:
        """(duplicates, holes) among entries refused as not above their stream's top.

        A duplicate is the same entry under the same ID; anything else cannot be written any
        more (a stream only grows at its top), so it is reported as a hole.
        """
        pipe = self._redis.pipeline(transaction=False)
        for stream, entry_id, _ in refused:
            pipe.xrange(stream, min=entry_id, max=entry_id, count=1)
        found = await pipe.execute()
        holes: dict[str, list[tuple[str, bytes]]] = {}
        dups: dict[str, int] = {}
        for (stream, entry_id, data), existing in zip(refused, found, strict=True):
            if existing and (existing[0][1] or {}).get(codec.FIELD) == data:
                dups[stream] = dups.get(stream, 0) + 1
            else:
                holes.setdefault(stream, []).append((entry_id, data))
        for stream, count in dups.items():
            metrics.DUPLICATES.labels(self._service, self._target(stream)[2]).inc(count)
        for stream, lost in holes.items():
            await self._report_hole(stream, lost)
        return sum(dups.values()), sum(len(v) for v in holes.values())

    async def _report_hole(self, stream: str, lost: Sequence[tuple[str, bytes]]) -> None:
        kind = self._target(stream)[2]
        self.holes += len(lost)
        metrics.HOLES.labels(self._service, kind).inc(len(lost))
        top = await self._redis.xrevrange(stream, count=1)
        top_id = entry_ids.parse(top[0][0] or b"0-0") if top else entry_ids.ZERO
        reason = (
            f"refused: {len(lost)} entries with IDs {lost[0][0]}..{lost[-1][0]} below the"
            f" stream top {top_id} that hold other data; not written"
        )
        log.error("%s: %s", stream, reason, extra={"stream": stream})
        if kind not in _GAP_KINDS:
            return
        first_ns, _, last_recv = _time_span(data for _, data in lost)
        gap = codec.encode(Gap(first_ns, last_recv, _gap_stream(kind), reason))
        key, maxlen, _ = self._target(stream)
        gap_id = str(top_id.next()).encode()
        try:  # on top of the stream at once, before anything newer is buffered behind it
            await self._redis.execute_command(  # type: ignore[no-untyped-call]
                b"XADD", key, b"MAXLEN", b"~", maxlen, gap_id, codec.FIELD, gap
            )
        except ResponseError as err:
            if _DUPLICATE_ID not in str(err):
                self._buf.insert(0, (stream, gap_id.decode(), gap))
                raise
            log.error("%s: the gap marker for the hole lost a race to another writer", stream)
        except BaseException:
            self._buf.insert(0, (stream, gap_id.decode(), gap))
            raise

    def _shed(self) -> None:
        """Drop the oldest tenth of a full buffer, recording per stream what was lost."""
        drop = len(self._buf) - self._max_buffer + max(1, self._max_buffer // 10)
        lost, self._buf = self._buf[:drop], self._buf[drop:]
        self._unsure = max(0, self._unsure - drop)
        self.dropped += len(lost)
        per_kind: dict[str, int] = {}
        for stream, entry_id, data in lost:
            loss = self._lost.get(stream)
            if loss is None:
                loss = self._lost[stream] = _Loss()
            first_event, last_event, last_recv = _time_span((data,))
            if not loss.count or first_event < loss.first_event:
                loss.first_event = first_event
            loss.last_event = max(loss.last_event, last_event)
            loss.last_recv = max(loss.last_recv, last_recv)
            loss.count += 1
            loss.last_id = entry_id
            kind = self._target(stream)[2]
            per_kind[kind] = per_kind.get(kind, 0) + 1
        for kind, count in per_kind.items():
            metrics.DROPPED.labels(self._service, kind).inc(count)
        log.error(
            "producer buffer full (%d entries) while Redis refuses writes: dropped the oldest %d",
            self._max_buffer,
            len(lost),
        )

    def _loss_gaps(self) -> list[tuple[str, str, bytes]]:
        """A Gap for every trades/book stream the bounded buffer dropped entries of; other
        kinds have no gap marker, their loss is in the log and the metric only."""
        out: list[tuple[str, str, bytes]] = []
        for stream, loss in list(self._lost.items()):
            kind = self._target(stream)[2]
            if kind not in _GAP_KINDS:
                del self._lost[stream]
                continue
            reason = (
                f"producer buffer full while Redis refused writes: {loss.count} entries dropped,"
                f" event time {loss.first_event}..{loss.last_event} ns"
            )
            gap = Gap(loss.first_event, loss.last_recv, _gap_stream(kind), reason)
            # an explicit ID keeps the stream's order: the last lost ID lies between what was
            # written before and what is still buffered
            out.append((stream, loss.last_id, codec.encode(gap)))
        return out

    def _target(self, stream: str) -> tuple[bytes, bytes, str]:
        # the key, MAXLEN and kind of a stream, worked out once per stream, not once per entry
        target = self._targets.get(stream)
        if target is None:
            kind = kind_of(stream)
            maxlen = str(retention.for_kind(kind).maxlen).encode()
            target = self._targets[stream] = (stream.encode(), maxlen, kind)
        return target

    async def trim_by_age(self) -> None:
        """XTRIM MINID ~ (server now - max age) on every stream written since the last trim."""
        self._next_trim = time.monotonic() + _TRIM_INTERVAL_S
        if not self._written:
            return
        sec, usec = await self._redis.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._written:
            age_ms = retention.for_kind(kind_of(stream)).max_age_s * 1000
            pipe.execute_command("XTRIM", stream, "MINID", "~", f"{now_ms - age_ms}-0")
        self._written.clear()
        await pipe.execute()


class DeadLetters:
    """Writes entries that cannot be decoded or processed to the instrument's dead-letter stream.

    Each dead letter keeps the reason, the origin stream and ID, the stage and the raw bytes, so it
    can be inspected (``ofx tail of:{SYM}:dlq``) and replayed by hand. Its ID is derived from the
    origin's (an origin ID ``ms-seq`` is used as is) so a re-run after a crash does not repeat it:
    a dead letter of the same origin entry by the same stage found at or above that ID is a
    duplicate. When the derived ID cannot go in (the stream's top is above it and it is not there)
    the dead letter takes an automatic ID, which a re-run finds the same way.
    """

    def __init__(self, redis: Redis, service: str) -> None:
        self._redis = redis
        self._service = service

    def fields(self, origin: str, origin_id: str, reason: str, raw: bytes | None) -> dict[Any, Any]:
        return {
            b"reason": reason.encode()[:2000],
            b"origin": origin.encode(),
            b"origin_id": origin_id.encode(),
            b"stage": self._service.encode(),
            codec.FIELD: raw if raw is not None else b"",
        }

    async def send(
        self,
        origin: str,
        origin_id: str,
        reason: str,
        raw: bytes | None,
        *,
        entry_id: str | None = None,
    ) -> bool:
        """Write the dead letter; False when it was already there (a re-run). ``entry_id``
        overrides the ID derived from ``origin_id``."""
        stream = keys.dead_letters(symbol_of(origin))
        fields = self.fields(origin, origin_id, reason, raw)
        wanted = entry_id if entry_id is not None else _dead_letter_id(origin_id)
        maxlen = retention.for_kind("dlq").maxlen
        try:
            await self._redis.xadd(stream, fields, id=wanted, maxlen=maxlen, approximate=True)
        except ResponseError as err:
            if _DUPLICATE_ID not in str(err):
                raise WriteRefused(f"dead letter to {stream} refused: {err}") from err
            if await self._already_sent(stream, wanted, fields):
                metrics.DUPLICATES.labels(self._service, "dlq").inc()
                return False
            await self._redis.xadd(stream, fields, maxlen=maxlen, approximate=True)
        metrics.DEAD_LETTERS.labels(self._service, reason.split(":")[0]).inc()
        log.warning("dead-lettered %s %s: %s", origin, origin_id, reason, extra={"stream": stream})
        return True

    async def _already_sent(self, stream: str, since: str, fields: Mapping[bytes, bytes]) -> bool:
        """Whether a dead letter of the same origin entry by the same stage sits at or above
        ``since`` (at most ``_DLQ_SCAN`` entries are looked at: dead letters are few)."""
        start, seen = since, 0
        while seen < _DLQ_SCAN:
            batch = await self._redis.xrange(stream, min=start, max="+", count=1000) or []
            for entry_id, old in batch:
                if old and all(old.get(k) == fields[k] for k in _DEAD_LETTER_IDENTITY):
                    return True
                start = f"({_s(entry_id or b'0-0')}"
            seen += len(batch)
            if len(batch) < 1000:
                return False
        log.warning("%s: no earlier copy among %d dead letters; writing it again", stream, seen)
        return False


def _dead_letter_id(origin_id: str) -> str:
    try:
        return str(entry_ids.parse(origin_id))
    except ValueError:  # not an entry ID (a feed's frame): nothing to derive from
        return "*"


def decode_fields(fields: Mapping[bytes, bytes] | None) -> tuple[Message | None, bytes | None, str]:
    """Decode an entry's field map; returns (message, raw, error reason)."""
    if not fields:  # a pending entry trimmed or deleted from the stream reads back empty
        return None, None, "trimmed: entry deleted from the stream before it was processed"
    raw = fields.get(codec.FIELD)
    if raw is None:
        return None, None, f"malformed: no '{codec.FIELD.decode()}' field"
    return _decode_raw(raw)


def _decode_raw(raw: bytes) -> tuple[Message | None, bytes | None, str]:
    try:
        return codec.decode(raw), raw, ""
    except codec.DecodeError as err:
        return None, raw, f"undecodable: {err}"


def decode_value(value: bytes | list[bytes] | None) -> tuple[Message | None, bytes | None, str]:
    """Decode what a fenced read returns for one entry (see ``checkpoint.Fence.read``)."""
    if isinstance(value, bytes):  # the ``d`` value itself (every entry a producer wrote)
        return _decode_raw(value)
    if value is None:
        return decode_fields(None)
    return decode_fields(dict(zip(value[::2], value[1::2], strict=True)))


async def ensure_group(redis: Redis, stream: str, group: str, start_id: str = "0") -> None:
    """Create the consumer group (and the stream) unless it exists.

    Groups start at 0 so nothing produced before a stage first ran is skipped.
    """
    try:
        await redis.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


class GroupReader:
    """Consumer-group reading for stateless consumers (alerts, journal writers).

    Many consumers share the group; each reads its own pending entries first, then new ones.
    Entries idle in a dead consumer's pending list longer than ``claim_idle_ms`` are taken over
    with XAUTOCLAIM; an entry delivered ``max_deliveries`` times is dead-lettered (poison).
    Undecodable entries are dead-lettered and acknowledged at once; ``read`` never returns them.
    """

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        service: str,
        count: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self._redis = redis
        self._streams = list(streams)
        self._group = group
        self._consumer = consumer
        self._service = service
        self._count = count
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._dead = DeadLetters(redis, service)
        self._trims = TrimWatch(redis, group, service=service, cap=LAG_COUNT_CAP)
        self._pending_cursor: dict[str, str] = dict.fromkeys(self._streams, "0")
        self._claim_cursor: dict[str, str] = dict.fromkeys(self._streams, "0-0")
        self._next_claim = 0.0
        self._next_lag_report = 0.0

    async def start(self) -> None:
        for stream in self._streams:
            await ensure_group(self._redis, stream, self._group)

    async def read(self) -> list[Entry]:
        """Own pending entries first, then entries claimed from dead consumers, then new ones."""
        if self._pending_cursor:
            entries = await self._read_pending()
            if entries:
                return entries
        now = time.monotonic()
        if now >= self._next_lag_report:
            self._next_lag_report = now + LAG_REPORT_S
            for stream in self._streams:
                await observe_lag(self._redis, self._service, stream, self._group)
                # A stateless consumer has no outputs to mark: counted and logged, then settled.
                found = await self._trims.check(stream)
                if found is not None:
                    await self._trims.settle(found)
        if now >= self._next_claim:
            self._next_claim = now + max(self._claim_idle_ms / 4000, 0.05)
            claimed = await self.reclaim()
            if claimed:
                return claimed
        reply = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            dict.fromkeys(self._streams, ">"),
            count=self._count,
            block=self._block_ms,
        )
        return await self._decode_reply(reply)

    async def _decode_reply(self, reply: Any) -> list[Entry]:
        """One pass from an XREADGROUP reply to Entries; what does not decode goes through
        ``_decode`` (dead letter + ack) and is left out."""
        out: list[Entry] = []
        bad: list[tuple[str, str, Mapping[bytes, bytes] | None]] = []
        for stream, entries in reply or ():
            name = _s(stream)
            for entry_id, fields in entries:
                raw = fields.get(codec.FIELD) if fields else None
                if raw is not None:
                    try:
                        msg = codec.decode(raw)
                    except codec.DecodeError:
                        pass
                    else:
                        out.append(_new_entry(Entry, (name, entry_id.decode(), msg, raw)))
                        continue
                bad.append((name, _s(entry_id), fields))
        if bad:
            await self._decode(bad)
        if out:
            metrics.MESSAGES_IN.labels(self._service, kind_of(out[0].stream)).inc(len(out))
        return out

    async def _read_pending(self) -> list[Entry]:
        cursors: Any = dict(self._pending_cursor)
        reply = await self._redis.xreadgroup(
            self._group, self._consumer, cursors, count=self._count
        )
        raw = _flatten(reply)
        seen = {stream for stream, _, _ in raw}
        for stream in list(self._pending_cursor):
            if stream not in seen:
                del self._pending_cursor[stream]
        for stream, entry_id, _ in raw:
            if stream in self._pending_cursor:
                self._pending_cursor[stream] = entry_id
        # Re-reading its own pending list counts as a delivery: an entry that kills the consumer
        # each time it is read would otherwise come back at every restart, forever.
        return await self._decode(await self._drop_poison(raw))

    async def reclaim(self) -> list[Entry]:
        """XAUTOCLAIM entries idle longer than the claim threshold from any consumer."""
        claimed: list[tuple[str, str, Mapping[bytes, bytes] | None]] = []
        for stream in self._streams:
            reply = await self._redis.xautoclaim(
                stream,
                self._group,
                self._consumer,
                self._claim_idle_ms,
                start_id=self._claim_cursor[stream],
                count=self._count,
            )
            cursor, messages = _s(reply[0]), reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            self._claim_cursor[stream] = cursor
            claimed.extend((stream, _s(entry_id), fields) for entry_id, fields in messages)
            claimed.extend((stream, _s(entry_id), None) for entry_id in deleted)
        if not claimed:
            return []
        keep = await self._drop_poison(claimed)
        log.info("reclaimed %d pending entries from idle consumers", len(keep))
        return await self._decode(keep)

    async def _drop_poison(
        self, entries: list[tuple[str, str, Mapping[bytes, bytes] | None]]
    ) -> list[tuple[str, str, Mapping[bytes, bytes] | None]]:
        """Dead-letter and ack the entries delivered more than ``max_deliveries`` times; the
        rest, in order."""
        if not entries:
            return entries
        poison = await over_delivered(
            self._redis,
            self._group,
            self._consumer,
            [(s, i) for s, i, _ in entries],
            self._max_deliveries,
        )
        if not poison:
            return entries
        keep = []
        for stream, entry_id, fields in entries:
            if (stream, entry_id) in poison:
                raw = fields.get(codec.FIELD) if fields else None
                reason = poison_reason(poison[(stream, entry_id)])
                await self._dead.send(stream, entry_id, reason, raw)
                await self._redis.xack(stream, self._group, entry_id)
            else:
                keep.append((stream, entry_id, fields))
        return keep

    async def _decode(
        self, raw: Iterable[tuple[str, str, Mapping[bytes, bytes] | None]]
    ) -> list[Entry]:
        out: list[Entry] = []
        bad: list[tuple[str, str]] = []
        for stream, entry_id, fields in raw:
            msg, data, reason = decode_fields(fields)
            if msg is None:
                await self._dead.send(stream, entry_id, reason, data)
                bad.append((stream, entry_id))
            else:
                out.append(_new_entry(Entry, (stream, entry_id, msg, data)))
        for stream, entry_id in bad:
            await self._redis.xack(stream, self._group, entry_id)
        if out:
            metrics.MESSAGES_IN.labels(self._service, kind_of(out[0].stream)).inc(len(out))
        return out

    async def ack(self, entries: Iterable[Entry]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for e in entries:  # as bytes: redis-py encodes str arguments on a slower path
            by_stream.setdefault(e.stream, []).append(e.id.encode())
        if not by_stream:
            return
        pipe = self._redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self._group, *ids)
        await pipe.execute()


_new_entry: Final = tuple.__new__  # an Entry without NamedTuple.__new__'s Python frame


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _flatten(reply: Any) -> list[tuple[str, str, Mapping[bytes, bytes] | None]]:
    """XREAD/XREADGROUP reply (RESP2) -> [(stream, id, fields)]."""
    out: list[tuple[str, str, Mapping[bytes, bytes] | None]] = []
    for stream, entries in reply or ():
        name = _s(stream)
        out.extend((name, _s(entry_id), fields) for entry_id, fields in entries)
    return out


async def group_lag(
    redis: Redis, stream: str, group: dict[Any, Any], *, cap: int | None = None
) -> int:
    """Entries not yet delivered to a group: XINFO GROUPS ``lag`` on Redis >= 7; older servers
    (the embedded 6.2) have no such field, so the entries are counted, up to ``cap`` if given."""
    lag = group.get("lag")
    if lag is not None:
        return int(lag)
    last = _s(group.get("last-delivered-id", b"0-0"))
    total = 0
    while cap is None or total < cap:
        step = 10_000 if cap is None else min(10_000, cap - total)
        batch = await redis.xrange(stream, min=f"({last}", max="+", count=step)
        if not batch:
            break
        total += len(batch)
        last = _s(batch[-1][0] or b"0-0")
    return total


async def observe_lag(redis: Redis, service: str, stream: str, group: str) -> None:
    """Export a group's lag and pending count on one stream as metrics."""
    for info in await redis.xinfo_groups(stream):
        if _s(info["name"]) == group:
            # capped on Redis < 7, where lag must be counted: the gauge then saturates there
            lag = await group_lag(redis, stream, info, cap=LAG_COUNT_CAP)
            metrics.LAG.labels(service, stream).set(lag)
            metrics.PENDING.labels(service, stream).set(int(info["pending"]))
