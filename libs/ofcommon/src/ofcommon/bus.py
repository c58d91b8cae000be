"""The Redis Streams bus: batched producer, dead letters and the consumer-group reader.

Stateful, owned per-instrument reading lives in ``stage``; this module holds what every stage uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ofcommon import codec, keys, metrics, retention
from ofcommon.deliveries import MAX_DELIVERIES, over_delivered, poison_reason
from ofcommon.messages import Message
from ofcommon.trims import TrimWatch

log = logging.getLogger(__name__)

Redis = aioredis.Redis
_DUPLICATE_ID: Final = "equal or smaller than the target stream top item"
_TRIM_INTERVAL_S: Final = 60.0
LAG_REPORT_S: Final = 5.0
LAG_COUNT_CAP: Final = 10_000  # lag and pending metrics, per stream, at most this often


class Entry(NamedTuple):
    """One stream entry, decoded. ``msg`` is None when it was dead-lettered instead."""

    stream: str
    id: str
    msg: Message | None
    raw: bytes | None


class FlushResult(NamedTuple):
    added: int
    duplicates: int


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


class Producer:
    """Buffers entries and writes them in one pipelined round trip per flush.

    Entries added with an explicit ID that Redis refuses as not above the stream's top were
    already written by an earlier run; they are counted as duplicates, not errors. On a
    connection error the buffer is kept, so a retried flush loses nothing.
    """

    def __init__(self, redis: Redis, *, service: str = "", trim_by_age: bool = True) -> None:
        self._redis = redis
        self._service = service
        self._buf: list[tuple[str, str, bytes]] = []
        self._trim_by_age = trim_by_age
        self._written: set[str] = set()
        self._next_trim = time.monotonic() + _TRIM_INTERVAL_S
        self._targets: dict[str, tuple[bytes, bytes, str]] = {}  # stream -> key, maxlen, kind

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, stream: str, msg: Message, entry_id: str = "*") -> None:
        self._buf.append((stream, entry_id, codec.encode(msg)))

    def add_encoded(self, stream: str, data: bytes, entry_id: str = "*") -> None:
        """Add an already-encoded message (the ``d`` value)."""
        self._buf.append((stream, entry_id, data))

    async def publish(self, stream: str, msg: Message, entry_id: str = "*") -> FlushResult:
        if self._buf:  # keep the order of what is already buffered
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
                metrics.DUPLICATES.labels(self._service, kind).inc()
                return FlushResult(0, 1)
            raise RuntimeError(f"1 XADD failed, first on {stream}: {err}") from err
        except BaseException:
            self._buf.append((stream, entry_id, data))  # as in flush: a retry loses nothing
            raise
        metrics.MESSAGES_OUT.labels(self._service, kind).inc()
        self._written.add(stream)
        if self._trim_by_age and time.monotonic() >= self._next_trim:
            await self.trim_by_age()
        return FlushResult(1, 0)

    async def flush(self) -> FlushResult:
        if not self._buf:
            return FlushResult(0, 0)
        buf = self._buf
        pipe = self._redis.pipeline(transaction=False)
        command = pipe.execute_command
        for stream, entry_id, data in buf:
            key, maxlen, _ = self._target(stream)
            command(b"XADD", key, b"MAXLEN", b"~", maxlen, entry_id, codec.FIELD, data)
        results = await pipe.execute(raise_on_error=False)
        self._buf = []
        failures: list[tuple[str, BaseException]] = []
        added: dict[str, int] = {}
        dups: dict[str, int] = {}
        for (stream, _, _), result in zip(buf, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, ResponseError) and _DUPLICATE_ID in str(result):
                    dups[stream] = dups.get(stream, 0) + 1
                else:
                    failures.append((stream, result))
            else:
                added[stream] = added.get(stream, 0) + 1
        self._written.update(added)
        for counter, per_stream in ((metrics.MESSAGES_OUT, added), (metrics.DUPLICATES, dups)):
            for stream, n in per_stream.items():
                counter.labels(self._service, self._target(stream)[2]).inc(n)
        if failures:
            stream, err = failures[0]
            raise RuntimeError(f"{len(failures)} XADD failed, first on {stream}: {err}") from err
        if self._trim_by_age and time.monotonic() >= self._next_trim:
            await self.trim_by_age()
        return FlushResult(sum(added.values()), sum(dups.values()))

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
    can be inspected (``ofx tail of:{SYM}:dlq``) and replayed by hand.
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

    async def send(self, origin: str, origin_id: str, reason: str, raw: bytes | None) -> None:
        stream = keys.dead_letters(symbol_of(origin))
        await self._redis.xadd(
            stream,
            self.fields(origin, origin_id, reason, raw),
            maxlen=retention.for_kind("dlq").maxlen,
            approximate=True,
        )
        metrics.DEAD_LETTERS.labels(self._service, reason.split(":")[0]).inc()
        log.warning("dead-lettered %s %s: %s", origin, origin_id, reason, extra={"stream": stream})


def decode_fields(fields: Mapping[bytes, bytes] | None) -> tuple[Message | None, bytes | None, str]:
    """Decode an entry's field map; returns (message, raw, error reason)."""
    if not fields:  # a pending entry trimmed or deleted from the stream reads back empty
        return None, None, "trimmed: entry deleted from the stream before it was processed"
    raw = fields.get(codec.FIELD)
    if raw is None:
        return None, None, f"malformed: no '{codec.FIELD.decode()}' field"
    try:
        return codec.decode(raw), raw, ""
    except codec.DecodeError as err:
        return None, raw, f"undecodable: {err}"


def decode_value(value: bytes | list[bytes] | None) -> tuple[Message | None, bytes | None, str]:
    """Decode what a fenced read returns for one entry (see ``checkpoint.Fence.read``)."""
    if isinstance(value, bytes):
        return decode_fields({codec.FIELD: value})
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
