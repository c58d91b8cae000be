"""Recordings for the backtest tests, made in code from the real captures (as the feed tests make
their frames): the Binance spot BTCUSDT capture as a Bybit linear recording.
"""

from __future__ import annotations

from pathlib import Path

from ofcommon.recording import RecordingWriter
from tests.support.binance_frames import binance_to_bybit


def binance_recording(directory: Path) -> list[Path]:
    """The Binance capture converted to Bybit v5 frames (``binance_to_bybit``), recorded as
    ``ofx record`` writes a connection: ``bybit-linear-<stamp>.gz`` in ``directory``."""
    with RecordingWriter(directory, "bybit", "linear") as writer:
        for recv_ns, frame in binance_to_bybit():
            writer.write(recv_ns, frame)
    return writer.paths
