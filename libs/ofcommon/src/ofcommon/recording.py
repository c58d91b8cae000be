"""Recordings of raw venue frames: one line per frame, ``<receive_ns> <frame>``, gzip, rotated.

The hftbacktest format: exactly what the connection received, so a replay drives the live parser.
One file per connection, named ``<venue>-<category>-<UTC start>[-<n>].gz``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

_NAME: Final = re.compile(r"^(?P<venue>[a-z0-9]+)-(?P<category>[a-z0-9_]+)-(?P<start>\d{8}T\d{6}Z)")


class RecordingError(ValueError):
    """A recording that cannot be read, with file and line."""


def recording_name(venue: str, category: str, start_ns: int, part: int = 0) -> str:
    stamp = datetime.fromtimestamp(start_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-{part:04d}" if part else ""
    return f"{venue}-{category}-{stamp}{suffix}.gz"


def parse_name(path: Path) -> tuple[str, str]:
    """(venue, category) from a recording's file name."""
    m = _NAME.match(path.name)
    if m is None:
        raise RecordingError(
            f"{path}: not a recording name (expected <venue>-<category>-<YYYYmmddTHHMMSSZ>….gz)"
        )
    return m["venue"], m["category"]


class RecordingWriter:
    """Appends frames to the current file; starts a new one past ``rotate_bytes`` or ``rotate_s``.

    Frames are written exactly as received. A raw newline can only sit between JSON tokens, so
    it is written as a space to keep one frame per line without changing the frame's meaning.
    """

    def __init__(
        self,
        out_dir: Path,
        venue: str,
        category: str,
        *,
        rotate_bytes: int = 256 * 1024 * 1024,
        rotate_s: float = 3600.0,
    ) -> None:
        self._dir = out_dir
        self._venue = venue
        self._category = category
        self._rotate_bytes = rotate_bytes
        self._rotate_ns = int(rotate_s * 1e9)
        self._file: gzip.GzipFile | None = None
        self._opened_ns = 0
        self._written = 0
        self._part = 0
        self._first_ns = 0
        self.paths: list[Path] = []

    def write(self, recv_ns: int, frame: bytes | str) -> None:
        data = frame.encode() if isinstance(frame, str) else frame
        if b"\n" in data or b"\r" in data:
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        if self._file is None or self._due(recv_ns):
            self._open(recv_ns)
        assert self._file is not None
        line = b"%d %s\n" % (recv_ns, data)
        self._file.write(line)
        self._written += len(line)

    def _due(self, recv_ns: int) -> bool:
        return self._written >= self._rotate_bytes or recv_ns - self._opened_ns >= self._rotate_ns

    def _open(self, recv_ns: int) -> None:
        self.close()
        if not self._first_ns:
            self._first_ns = recv_ns
        self._dir.mkdir(parents=True, exist_ok=True)
        while True:  # never append to another writer's file (same venue, category and second)
            path = self._dir / recording_name(
                self._venue, self._category, self._first_ns, self._part
            )
            self._part += 1
            try:
                self._file = gzip.open(path, "xb")  # noqa: SIM115 (closed by close())
                break
            except FileExistsError:
                continue
        self._opened_ns = recv_ns
        self._written = 0
        self.paths.append(path)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_recording(
    path: Path, on_torn: Callable[[Path], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (receive_ns, frame) in file order.

    A recorder killed mid-write leaves a last line without its newline, or a gzip stream cut
    short: what was completely written is yielded, the torn tail is not (``on_torn`` is told).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        lineno = 0
        try:
            for raw in f:
                lineno += 1
                if not raw.endswith(b"\n"):
                    if on_torn is not None:
                        on_torn(path)
                    return
                line = raw.rstrip(b"\r\n")
                if not line:
                    continue
                stamp, sep, frame = line.partition(b" ")
                if not sep or not stamp.isdigit():
                    raise RecordingError(f"{path}:{lineno}: expected '<receive_ns> <frame>'")
                yield int(stamp), frame
        except EOFError:  # gzip stream cut short by a killed writer
            if on_torn is not None:
                on_torn(path)
