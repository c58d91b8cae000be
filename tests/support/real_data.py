"""Where the shared real market data lives, and the one way a test asks for a file of it.

Tests read ``../shared/data/real`` beside the repository (ORDERFLOW_REAL_DATA overrides it); when a
file is absent the test skips with the reason, the only skip the suite allows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = Path(os.environ.get("ORDERFLOW_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

BINANCE_SPOT = REAL_DATA / "binance" / "spot_btcusdt_20240808.gz"
BYBIT_XRP_OB500 = REAL_DATA / "bybit" / "2024-12-01_XRPUSDT_ob500.ndjson"
# CME Globex ESH4 trades (one hour, 2023-12-25 23:00 UTC): ts_event_ns,ts_recv_ns,price,size,
# aggressor_side (B/A/N),sequence,flags, derived from the MBO file beside it (see its README.md).
CME_ESH4_TRADES = REAL_DATA / "cme" / "esh4_20231225_trades_derived.csv"


def require(path: Path) -> Path:
    """``path``, or skip the test: the real-data tree is shared and may be absent."""
    if not path.is_file():
        pytest.skip(
            f"real market data not found at {path} (expected the shared fixtures in"
            f" {REAL_DATA}; see its README.md; ORDERFLOW_REAL_DATA overrides the location)"
        )
    return path


def real_file(relative: str) -> Path:
    """A file of the real-data fixtures by its path under the data folder, or skip."""
    return require(REAL_DATA / relative)
