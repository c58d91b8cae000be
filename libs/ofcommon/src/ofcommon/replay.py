"""Replay of recorded venue frames into the instrument streams, through the venue's live parser.

Files merge in receive-time order, paced by receive time; loops shift time, derived IDs dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeVar

import msgspec
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    TimeoutError as RedisTimeoutError,
)

from ofcommon import entry_ids, keys
from ofcommon.bus import DeadLetters, Producer, Redis, WriteRefused
from ofcommon.instruments import Registry
from ofcommon.messages import Gap, Message, Trade
from ofcommon.recording import RecordingError, parse_name, read_recording
from ofcommon.venue import ENTRY_POINT_GROUP, BadFrame, FrameParser, Venue

__all__ = [
    "Frame",
    "IdMode",
    "ReplayError",
    "ReplayStats",
    "Source",
    "load_venue",
    "merged_frames",
    "plan",
    "replay",
    "shift_period",
]

log = logging.getLogger(__name__)

IdMode = Literal["auto", "derived"]
_T = TypeVar("_T")

SERVICE: Final = "replay"
BATCH: Final = 500  # entries per pipelined flush: one round trip, bounded memory
PROGRESS_EVERY_S: Final = 1.0
# Loop passes are shifted by whole minutes so every 1-minute bar boundary falls at the same
# place in the data on every pass (and so do the 5m/15m/1h ones when the span allows).
SHIFT_UNIT_NS: Final = 60 * 1_000_000_000
_MIN_SLEEP_S: Final = 0.001
_YIELD_EVERY: Final = 1024  # frames between forced yields, so signal handlers get to run
# a failing write is retried this long (Redis restarting, or refusing writes) before giving up
RETRY_FOR_S: Final = 120.0
_RETRY_FIRST_S: Final = 0.1
_RETRY_MAX_S: Final = 5.0
_TIME_FIELDS: Final = frozenset(
    {"ts_event", "ts_recv", "open_ts", "close_ts", "session_start", "session_end"}
)
# <venue>-<category>-<stamp>[-<part>][.gz]: the connection is everything before the part number
_PART: Final = re.compile(r"^(?P<connection>.+?)(?:-(?P<part>\d{4}))?(?:\.gz)?$")


class ReplayError(Exception):
    """A replay that cannot start or go on: unknown or broken venue, bad file name, bad file."""


@dataclass
class ReplayStats:
    """What one replay did. ``messages`` counts what the parsers produced, per stream kind;
    ``added`` + ``duplicates`` + ``holes`` is what Redis did with them (duplicates: derived IDs
    that already hold the same entry; holes: refused IDs that hold something else)."""

    files: int = 0
    frames: int = 0
    bad_frames: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    added: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    truncated_files: int = 0
    passes: int = 0
    span_s: float = 0.0  # receive-time span of the recording (one pass)
    duration_s: float = 0.0  # wall time of the replay
    holes: int = 0  # refused below a stream's top without being duplicates: lost, Gap written

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Source(NamedTuple):
    """The files of one recorded connection, in part order."""

    venue: str
    category: str
    connection: str
    paths: tuple[Path, ...]


class Frame(NamedTuple):
    """One recorded frame: receive time, index of its source in the plan, file and number."""

    recv_ns: int
    source: int
    path: Path
    number: int  # 1-based frame number in its file (its line number, for RecordingWriter files)
    data: bytes


def load_venue(name: str) -> Venue:
    """The venue plugged in under ``name``; only its own entry point is loaded.

    Loading every venue would make one half-written feed break the replay of all the others.
    """
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ReplayError(
            f"no venue {name!r} is installed (installed: {', '.join(known) or 'none'};"
            f" venues register under the {ENTRY_POINT_GROUP!r} entry-point group)"
        )
    ep = next(iter(found))
    try:
        obj = ep.load()
    except Exception as err:
        raise ReplayError(
            f"venue {name!r} ({ep.value}) cannot be loaded: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(obj, Venue):
        raise ReplayError(f"venue {name!r} ({ep.value}) is not an ofcommon.venue.Venue")
    return obj


def plan(paths: Sequence[Path]) -> list[Source]:
    """Group recording files by connection (rotated parts in order), connections sorted by name.

    The order is fixed by the names alone, so the merge of equal receive times is deterministic
    whatever order the files were given in.
    """
    if not paths:
        raise ReplayError("no recording files given")
    parts: dict[str, list[tuple[int, Path]]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    seen: set[Path] = set()
    for path in paths:
        if not path.is_file():
            raise ReplayError(f"{path}: no such recording file")
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            venue, category = parse_name(path)
        except RecordingError as err:
            raise ReplayError(str(err)) from None
        m = _PART.match(path.name)
        assert m is not None  # the pattern matches any non-empty name
        connection = m["connection"]
        parts.setdefault(connection, []).append((int(m["part"] or 0), path))
        kinds[connection] = (venue, category)
    out: list[Source] = []
    for connection in sorted(parts):
        numbered = sorted(parts[connection], key=lambda p: (p[0], p[1].name))
        venue, category = kinds[connection]
        out.append(Source(venue, category, connection, tuple(p for _, p in numbered)))
    return out


def shift_period(lo_ns: int, hi_ns: int) -> int:
    """The time shift between loop passes: whole minutes, strictly longer than the data's span.

    With every timestamp of a pass inside ``[lo, hi]``, pass ``k`` shifted by ``k * period``
    starts strictly after the end of pass ``k - 1``, so event and receive time only increase.
    """
    units = -(-(hi_ns - lo_ns + 1) // SHIFT_UNIT_NS)  # integer ceiling: floats lose nanoseconds
    return max(1, units) * SHIFT_UNIT_NS


async def replay(
    redis: Redis,
    paths: Sequence[Path],
    *,
    speed: float | None = None,
    loop: bool = False,
    registry: Registry,
    stop: asyncio.Event | None = None,
    ids: IdMode = "auto",
    progress: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Publish the recordings' frames, parsed by their venues, into the instrument streams.

    ``speed``: None = as fast as possible, 1 = real time, 10 = ten times faster (paced by the
    recorded receive times; the wall clock is read for pacing only). ``loop``: replay from the
    start with fresh parsers until ``stop``; pass ``k`` shifts every timestamp by
    ``k * shift_period`` and suffixes trade ids with ``~k``, and each pass after the first
    starts with a ``Gap`` on every trades/book stream. ``ids="derived"``: entry IDs from the
    frame's receive time alone (ms, and ns within it), so a repeated replay, or a replay of a
    recording's parts one by one, writes each entry under the same ID (a repeat is a duplicate).
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number or None (max), got {speed!r}")
    if ids not in ("auto", "derived"):
        raise ValueError(f"ids must be 'auto' or 'derived', got {ids!r}")
    sources = plan(paths)
    venues = {name: load_venue(name) for name in sorted({s.venue for s in sources})}
    for source in sources:
        categories = venues[source.venue].categories
        if source.category not in categories:
            raise ReplayError(
                f"{source.paths[0]}: venue {source.venue!r} has no category"
                f" {source.category!r} (it has: {', '.join(categories)})"
            )
    runner = _Replayer(
        redis,
        sources,
        venues,
        registry,
        speed=speed,
        ids=ids,
        stop=stop or asyncio.Event(),
        progress=progress,
    )
    return await runner.run(loop=loop)


class _Publisher:
    """The producer plus entry-ID assignment and dead letters, with their counts in the stats.

    A write that fails because Redis is away or refuses writes is retried with backoff: the
    producer keeps what it could not write, and derived IDs make a repeated write a duplicate.
    """

    def __init__(self, redis: Redis, ids: IdMode, stats: ReplayStats, stop: asyncio.Event) -> None:
        self._redis = redis
        self._derived = ids == "derived"
        self._stats = stats
        self._stop = stop
        # Derived IDs carry the recording's (old) receive times; an age trim (MINID now - age)
        # would delete them at once and let a repeat write them again, so only MAXLEN applies.
        self._producer = Producer(redis, service=SERVICE, trim_by_age=not self._derived)
        self._dead = DeadLetters(redis, SERVICE)
        self._ids = entry_ids.ReceiveIds()

    def next_id(self, stream: str, recv_ns: int) -> str:
        if not self._derived:
            return "*"
        return str(self._ids.next(stream, recv_ns))

    def add(self, stream: str, kind: str, msg: Message, recv_ns: int) -> None:
        self._producer.add(stream, msg, self.next_id(stream, recv_ns))
        self._stats.messages[kind] = self._stats.messages.get(kind, 0) + 1

    def __len__(self) -> int:
        return len(self._producer)

    async def flush(self) -> None:
        result = await self._retrying("publishing", self._producer.flush)
        self._stats.added += result.added
        self._stats.duplicates += result.duplicates
        self._stats.holes += result.holes

    async def dead_letter(
        self, origin: str, origin_id: str, reason: str, raw: bytes, recv_ns: int
    ) -> None:
        if not self._derived:
            await self._retrying(
                "dead-lettering", lambda: self._dead.send(origin, origin_id, reason, raw)
            )
            self._stats.dead_letters += 1
            return
        entry_id = self.next_id(keys.dead_letters(None), recv_ns)
        written = await self._retrying(
            "dead-lettering",
            lambda: self._dead.send(origin, origin_id, reason, raw, entry_id=entry_id),
        )
        if written:
            self._stats.dead_letters += 1
        else:
            self._stats.duplicates += 1

    async def _retrying(self, what: str, write: Callable[[], Awaitable[_T]]) -> _T:
        """``write()``, again with backoff while Redis is away or refuses writes; given up only
        when stopped or after ``RETRY_FOR_S`` of failures in a row."""
        delay = _RETRY_FIRST_S
        failing_since: float | None = None
        while True:
            try:
                return await write()
            except (OSError, RedisConnectionError, RedisTimeoutError, WriteRefused) as err:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if self._stop.is_set() or now - failing_since >= RETRY_FOR_S:
                    raise
                log.warning("replay: %s failed (%s); retrying in %.1f s", what, err, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, _RETRY_MAX_S)


class _Replayer:
    def __init__(
        self,
        redis: Redis,
        sources: Sequence[Source],
        venues: Mapping[str, Venue],
        registry: Registry,
        *,
        speed: float | None,
        ids: IdMode,
        stop: asyncio.Event,
        progress: Callable[[ReplayStats], None] | None,
    ) -> None:
        self._sources = sources
        self._venues = venues
        self._registry = registry
        self._speed = speed
        self._stop = stop
        self._progress = progress
        self.stats = ReplayStats(files=sum(len(s.paths) for s in sources))
        self._pub = _Publisher(redis, ids, self.stats, stop)
        # time bounds of the first pass (frames' receive times and every message timestamp)
        self._lo: int | None = None
        self._hi: int | None = None
        self._recv_lo: int | None = None
        self._recv_hi: int | None = None
        # streams the first pass wrote, in first-write order: the loop's Gap markers go there
        self._streams: dict[str, tuple[str, str]] = {}
        self._anchor: tuple[float, int] | None = None  # (monotonic s, recv_ns) of a pass start
        self._next_progress = 0.0

    async def run(self, *, loop: bool) -> ReplayStats:
        started = time.monotonic()
        try:
            pass_no = 0
            while True:
                offset = 0 if pass_no == 0 else pass_no * self._period()
                if pass_no:
                    self._mark_restart(pass_no, offset)
                await self._one_pass(pass_no, offset)
                self.stats.passes += 1
                if pass_no == 0 and self._recv_lo is not None and self._recv_hi is not None:
                    self.stats.span_s = (self._recv_hi - self._recv_lo) / 1e9
                if not loop or self._stop.is_set():
                    break
                if self._lo is None or not self._streams:
                    log.warning("replay loop: a pass published nothing; not looping")
                    break
                pass_no += 1
        finally:
            # what was parsed is written even when stopped or failing: a consistent prefix
            await self._pub.flush()
            self.stats.duration_s = time.monotonic() - started
        return self.stats

    def _period(self) -> int:
        assert self._lo is not None
        assert self._hi is not None
        return shift_period(self._lo, self._hi)

    def _mark_restart(self, pass_no: int, offset: int) -> None:
        """A Gap on every trades/book stream: the book and the tape jump back to the start."""
        assert self._lo is not None
        ts = self._lo + offset
        for stream, (_symbol, kind) in self._streams.items():
            if kind in ("trades", "book"):
                reason = f"replay loop: pass {pass_no} restarts the recording"
                gap = Gap(ts, ts, "trades" if kind == "trades" else "book", reason)
                self._pub.add(stream, kind, gap, ts)

    async def _one_pass(self, pass_no: int, offset: int) -> None:
        parsers: dict[tuple[str, str], FrameParser] = {}
        for source in self._sources:
            key = (source.venue, source.category)
            if key not in parsers:  # fresh parsers each pass: no book state leaks across
                parsers[key] = self._venues[source.venue].parser(source.category, self._registry)
        self._anchor = None
        for n, frame in enumerate(merged_frames(self._sources, self.stats), 1):
            if self._stop.is_set():
                return
            source = self._sources[frame.source]
            await self._pace(frame.recv_ns)
            if self._stop.is_set():  # stopped while waiting: this frame was not due yet
                return
            await self._handle(frame, parsers[(source.venue, source.category)], pass_no, offset)
            if len(self._pub) >= BATCH:
                await self._pub.flush()
            elif n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self._report()

    async def _pace(self, recv_ns: int) -> None:
        if self._speed is None:
            return
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, recv_ns)
            return
        start_s, start_ns = self._anchor
        delay = start_s + (recv_ns - start_ns) / 1e9 / self._speed - now
        if delay < _MIN_SLEEP_S:
            return
        await self._pub.flush()  # what is due now reaches the streams before we wait
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _handle(self, frame: Frame, parser: FrameParser, pass_no: int, offset: int) -> None:
        self.stats.frames += 1
        if pass_no == 0:
            self._widen(frame.recv_ns)
            lo, hi = self._recv_lo, self._recv_hi
            self._recv_lo = frame.recv_ns if lo is None else min(lo, frame.recv_ns)
            self._recv_hi = frame.recv_ns if hi is None else max(hi, frame.recv_ns)
        try:
            outputs = [
                (keys.stream(p.symbol, p.kind), p.symbol, p.kind, p.msg)
                for p in parser.parse(frame.recv_ns, frame.data)
            ]
        except BadFrame as err:
            await self._reject(frame, f"malformed: {err}", offset)
            return
        except Exception as err:  # a parser bug must not end the replay; it is kept, loudly
            log.exception("parser of %s failed on frame %d", frame.path.name, frame.number)
            await self._reject(frame, f"fold-error: {type(err).__name__}: {err}", offset)
            return
        for stream, symbol, kind, msg in outputs:
            if pass_no == 0:
                self._widen(*_times(msg))
                self._streams.setdefault(stream, (symbol, kind))
            else:
                msg = _shifted(msg, offset, pass_no)
            self._pub.add(stream, kind, msg, frame.recv_ns + offset)

    async def _reject(self, frame: Frame, reason: str, offset: int) -> None:
        self.stats.bad_frames += 1
        origin = f"replay:{frame.path.name}"
        origin_id = f"{frame.number}@{frame.recv_ns}"
        await self._pub.dead_letter(origin, origin_id, reason, frame.data, frame.recv_ns + offset)

    def _widen(self, *stamps: int) -> None:
        for ts in stamps:
            self._lo = ts if self._lo is None else min(self._lo, ts)
            self._hi = ts if self._hi is None else max(self._hi, ts)

    def _report(self) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY_S
            self._progress(self.stats)


def merged_frames(sources: Sequence[Source], stats: ReplayStats) -> Iterator[Frame]:
    """Every source's frames merged by receive time; ties keep the sources' (sorted) order."""
    if len(sources) == 1:  # nothing to merge: spare the heap its per-frame key calls
        return _frames(0, sources[0], stats)
    return heapq.merge(
        *(_frames(i, s, stats) for i, s in enumerate(sources)), key=lambda f: f.recv_ns
    )


def _frames(index: int, source: Source, stats: ReplayStats) -> Iterator[Frame]:
    def torn(path: Path) -> None:
        # the recorder was killed mid-write: everything it flushed has been read
        log.warning("%s: ends early (recorder killed?); read up to there", path)
        stats.truncated_files += 1

    for path in source.paths:
        try:
            for number, (recv_ns, data) in enumerate(read_recording(path, torn), 1):
                yield Frame(recv_ns, index, path, number, data)
        except RecordingError as err:
            raise ReplayError(str(err)) from None
        except OSError as err:  # e.g. not gzip at all: BadGzipFile
            raise ReplayError(f"{path}: cannot read: {err}") from None


def _times(msg: Message) -> Iterable[int]:
    return (getattr(msg, f) for f in msg.__struct_fields__ if f in _TIME_FIELDS)


def _shifted(msg: Message, offset: int, pass_no: int) -> Message:
    """The message of a later loop pass: timestamps moved on, trade ids made unique again.

    Analytics drops trades whose id it has seen, so a repeated id would lose every later pass.
    """
    changes: dict[str, Any] = {
        f: getattr(msg, f) + offset for f in msg.__struct_fields__ if f in _TIME_FIELDS
    }
    if isinstance(msg, Trade):
        changes["trade_id"] = f"{msg.trade_id}~{pass_no}"
    return msgspec.structs.replace(msg, **changes)
