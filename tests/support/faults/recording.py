"""The fault matrix's input: the real Binance BTCUSDT capture as the Bybit feed publishes it.

The capture is converted to Bybit v5 frames (``binance_frames``) and parsed by the real
``BybitParser``, so the matrix runs on what a live feed would have written, not on a simulation.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Final

from of_feed_bybit.parser import BybitParser
from ofcommon.instruments import load_registry
from ofcommon.recording import recording_name
from ofcommon.venue import Published
from tests.support.binance_frames import binance_to_bybit

SYMBOL: Final = "BTCUSDT"
DEPTH: Final = 50  # the depth `ofx replay`'s Bybit parser subscribes at, as the live feed does


@functools.cache
def real_frames() -> tuple[tuple[int, bytes], ...]:
    """The ~6-minute capture as Bybit linear ``(recv_ns, frame)`` pairs."""
    return tuple(binance_to_bybit(symbol=SYMBOL, depth=DEPTH))


@functools.cache
def real_recording() -> tuple[Published, ...]:
    """Every trade and book message the live parser publishes for the capture, in order."""
    parser = BybitParser("linear", load_registry(), depth=DEPTH)
    out: list[Published] = []
    for recv_ns, frame in real_frames():
        out.extend(parser.parse(recv_ns, frame))
    if parser.counters["malformed"] or not out:
        raise AssertionError(f"the capture did not parse cleanly: {parser.counters}")
    return tuple(out)


def write_recording(directory: Path) -> Path:
    """The capture as a recorder file (``<recv_ns> <frame>`` lines, gzip) for ``ofx replay``."""
    frames = real_frames()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / recording_name("bybit", "linear", frames[0][0])
    with gzip.open(path, "wb") as f:
        for recv_ns, frame in frames:
            f.write(b"%d %s\n" % (recv_ns, frame))
    return path
