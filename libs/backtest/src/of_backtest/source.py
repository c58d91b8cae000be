"""The backtest's inputs: recordings through their venues' live parsers, or the simulator, as the
instrument streams' entries with the IDs ``ofx replay --ids derived`` writes them under.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ofcommon import keys
from ofcommon.entry_ids import ReceiveIds
from ofcommon.inprocess import Entry
from ofcommon.instruments import Registry
from ofcommon.replay import (
    ReplayError,
    ReplayStats,
    Source,
    load_venue,
    merged_frames,
    plan,
)
from ofcommon.simulator import Label, SimConfig, simulate
from ofcommon.venue import BadFrame, FrameParser, Published

CHUNK: Final = 4096  # stream entries handed on at a time (the pipeline's unit of work)

Chunk = list[tuple[str, Entry]]
"""Entries of the instrument streams in publication order, each with its symbol."""


@dataclass(frozen=True)
class Window:
    """Receive-time bounds of the frames (or simulated messages) folded: ``[start, end)``."""

    start: int | None = None
    end: int | None = None

    def before(self, ts: int) -> bool:
        return self.start is not None and ts < self.start

    def after(self, ts: int) -> bool:
        return self.end is not None and ts >= self.end


@dataclass
class Progress:
    """How far the input is: ``done`` of ``total`` units (bytes of recording, or event ns)."""

    total: int = 0
    done: int = 0
    trades: int = 0
    event_ns: int = 0


@dataclass
class Intake:
    """What the source read: the replay's statistics and the frames the parsers refused."""

    stats: ReplayStats = field(default_factory=lambda: ReplayStats(files=0))
    bad_frames: list[tuple[str, str, str]] = field(default_factory=list)  # file, frame, reason
    labels: list[Label] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    description: str = ""  # what was read, for the report's first line


def _uncompressed_size(path: Path) -> int:
    """A gzip file's uncompressed size from its trailer (exact below 4 GiB; the recorder rotates
    at 256 MiB), or the file's size when it is not gzip or is torn."""
    size = path.stat().st_size
    if path.suffix != ".gz" or size < 18:
        return size
    with path.open("rb") as f:
        f.seek(-4, 2)
        (isize,) = struct.unpack("<I", f.read(4))
    return int(isize) if isize else size


def _published(
    parser: FrameParser, recv_ns: int, data: bytes, name: str, number: int, intake: Intake
) -> list[Published]:
    try:
        return parser.parse(recv_ns, data)
    except BadFrame as err:
        reason = f"malformed: {err}"
    except Exception as err:  # a parser bug: kept as the replay keeps it
        reason = f"fold-error: {type(err).__name__}: {err}"
    intake.stats.bad_frames += 1
    intake.bad_frames.append((name, f"{number}@{recv_ns}", reason))
    return []


def _parsers(sources: Sequence[Source], registry: Registry) -> dict[tuple[str, str], FrameParser]:
    """One live parser per (venue, category), as one replay pass builds them."""
    venues = {name: load_venue(name) for name in sorted({s.venue for s in sources})}
    parsers: dict[tuple[str, str], FrameParser] = {}
    for s in sources:
        venue = venues[s.venue]
        if s.category not in venue.categories:
            raise ReplayError(
                f"{s.paths[0]}: venue {s.venue!r} has no category {s.category!r}"
                f" (it has: {', '.join(venue.categories)})"
            )
        if (s.venue, s.category) not in parsers:
            parsers[(s.venue, s.category)] = venue.parser(s.category, registry)
    return parsers


def recordings(
    paths: Sequence[Path],
    registry: Registry,
    intake: Intake,
    *,
    symbols: frozenset[str] | None = None,
    window: Window = Window(),
    chunk_size: int = CHUNK,
) -> Iterator[Chunk]:
    """The recordings' messages as ``ofx replay --ids derived`` publishes them (one pass), in
    chunks of about ``chunk_size`` entries."""
    sources = plan(paths)
    parsers = _parsers(sources, registry)
    stats = intake.stats
    stats.files = sum(len(s.paths) for s in sources)
    names = ", ".join(p.name for s in sources for p in s.paths)
    intake.description = f"recordings: {names}"
    intake.progress.total = sum(_uncompressed_size(p) for s in sources for p in s.paths)
    next_id = ReceiveIds().next
    streams: dict[tuple[str, str], str] = {}
    chunk: Chunk = []
    append = chunk.append
    progress = intake.progress
    messages = stats.messages
    start = window.start if window.start is not None else -1
    end = window.end
    for frame in merged_frames(sources, stats):
        recv = frame.recv_ns
        progress.done += len(frame.data) + 21
        if end is not None and recv >= end:
            break
        stats.frames += 1
        source = sources[frame.source]
        parser = parsers[(source.venue, source.category)]
        out = _published(parser, recv, frame.data, frame.path.name, frame.number, intake)
        if recv < start:
            continue  # parsed all the same: the parser's book state needs every frame
        for symbol, kind, msg in out:
            if symbols is not None and symbol not in symbols:
                continue
            stream = streams.get((symbol, kind))
            if stream is None:
                stream = streams[(symbol, kind)] = keys.stream(symbol, kind)
            messages[kind] = messages.get(kind, 0) + 1
            append((symbol, Entry(next_id(stream, recv), kind, msg)))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
            append = chunk.append
    if chunk:
        yield chunk
    stats.passes = 1


def simulated(
    config: SimConfig, intake: Intake, *, window: Window = Window(), chunk_size: int = CHUNK
) -> Iterator[Chunk]:
    """The simulated market's messages with receive-time IDs (their ``ts_recv``)."""
    hours = config.duration_ns / 3.6e12
    intake.description = f"the SIMULATED market (seed {config.seed}, {hours:g} h): not real data"
    ids = ReceiveIds()
    streams: dict[tuple[str, str], str] = {}
    chunk: Chunk = []
    progress = intake.progress
    progress.total = config.duration_ns
    for item in simulate(config):
        if isinstance(item, Label):
            intake.labels.append(item)
            continue
        symbol, kind, msg = item
        recv = int(getattr(msg, "ts_recv", getattr(msg, "ts_event", 0)))
        progress.done = max(progress.done, recv - config.start_ns)
        if window.after(recv):
            break
        if window.before(recv):
            continue
        stream = streams.get((symbol, kind))
        if stream is None:
            stream = streams[(symbol, kind)] = keys.stream(symbol, kind)
        intake.stats.messages[kind] = intake.stats.messages.get(kind, 0) + 1
        chunk.append((symbol, Entry(ids.next(stream, recv), kind, msg)))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
