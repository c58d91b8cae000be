"""MT5 frames: one JSON object per poll result, the unit that is recorded, replayed and parsed.

Self-describing (instrument, broker symbol, server clock), so any frame parses alone; append-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import msgspec

from of_feed_mt5.cursor import TickRow
from of_feed_mt5.side import DEFAULT_SIDE_RULE

# (time, open, high, low, close, tick_volume, spread, real_volume), as copy_rates_* returns
RateRow: TypeAlias = tuple[int, float, float, float, float, int, int, int]
# (type, price, volume, volume_dbl), as market_book_get returns
BookRow: TypeAlias = tuple[int, float, int, float]


class _Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    instrument: str  # the registry's symbol
    symbol: str = ""  # the broker's name for it


class SymbolFrame(_Frame, tag="symbol", frozen=True):
    """The broker symbol chosen for an instrument, with what the terminal says about it."""

    clock: str
    digits: int = 0
    point: float = 0.0
    tick_size: float = 0.0
    book_depth: int = 0
    description: str = ""


class TicksFrame(_Frame, tag="ticks", frozen=True):
    """New ticks of one poll; ``ticks`` rows are kept raw so one bad row costs only itself."""

    clock: str
    ticks: list[msgspec.Raw]
    backfill: bool = False
    side_rule: str = DEFAULT_SIDE_RULE


class BarsFrame(_Frame, tag="bars", frozen=True):
    """M1 bars of the history warm-up, used when the terminal has no tick history."""

    clock: str
    bars: list[RateRow]
    backfill: bool = True


class BookFrame(_Frame, tag="book", frozen=True):
    """A changed DOM; it has no time of its own, ``ts_event`` is the feed's event-time estimate."""

    ts_event: int  # UTC ns
    levels: list[BookRow]
    depth: int = 0


class HeartbeatFrame(_Frame, tag="heartbeat", frozen=True):
    ts_event: int  # UTC ns: the latest broker event time advanced by elapsed wall time


Frame: TypeAlias = SymbolFrame | TicksFrame | BarsFrame | BookFrame | HeartbeatFrame

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Frame] = msgspec.json.Decoder(Frame)
_tick_decoder: msgspec.json.Decoder[TickRow] = msgspec.json.Decoder(TickRow)

DecodeError = msgspec.DecodeError


def decode(data: bytes) -> Frame:
    """Raises ``msgspec.DecodeError`` (incl. validation errors) on a bad frame."""
    return _decoder.decode(data)


def decode_tick(raw: msgspec.Raw) -> TickRow:
    return _tick_decoder.decode(raw)


def encode(frame: Frame) -> bytes:
    return _encoder.encode(frame)


def ticks_frame(
    instrument: str,
    symbol: str,
    clock: str,
    rows: Sequence[Sequence[Any]],
    *,
    backfill: bool = False,
    side_rule: str = DEFAULT_SIDE_RULE,
) -> bytes:
    """The frame of a poll's new ticks (rows as ``ndarray.tolist()`` gives them)."""
    raw = [msgspec.Raw(_encoder.encode(row)) for row in rows]
    return encode(
        TicksFrame(
            instrument=instrument,
            symbol=symbol,
            clock=clock,
            ticks=raw,
            backfill=backfill,
            side_rule=side_rule,
        )
    )
