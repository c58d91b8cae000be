"""What a market-data venue plugs into the system: a pure frame parser and a recorder.

Feeds register a ``Venue`` under the ``ofx.venues`` entry-point group, so ``ofx record`` and
``ofx replay`` drive the very same parser code as the live feed, for any venue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from ofcommon.instruments import Registry
from ofcommon.messages import Message
from ofcommon.plugins import load_group

ENTRY_POINT_GROUP = "ofx.venues"


class Published(NamedTuple):
    """One normalised message for an instrument's stream."""

    symbol: str  # the registry's internal symbol, e.g. "XAUUSDT"
    kind: str  # stream kind: "trades" or "book"
    msg: Message


class FrameParser(Protocol):
    """Raw venue frames in, normalised messages out; no I/O and no clock.

    ``recv_ns`` is the frame's receive time (recorded with it), the only time the parser may use
    besides the venue's own timestamps. Malformed frames raise ``BadFrame``; the caller counts,
    logs and dead-letters them and goes on.
    """

    def parse(self, recv_ns: int, frame: bytes) -> list[Published]: ...


class BadFrame(ValueError):
    """A frame the parser cannot use, with the reason."""


class RecordOptions(NamedTuple):
    category: str
    out_dir: Path
    duration_s: float | None
    registry: Registry


@dataclass(frozen=True)
class Venue:
    """A venue's plug: ``parser(category, registry)`` for replay and ``record`` for capture."""

    name: str
    categories: tuple[str, ...]
    parser: Callable[[str, Registry], FrameParser]
    record: Callable[[RecordOptions, asyncio.Event], Awaitable[Sequence[Path]]] | None = None


def venues() -> dict[str, Venue]:
    return load_group(ENTRY_POINT_GROUP, Venue)
