"""How long each kind of stream is kept: approximate MAXLEN on every XADD plus a MINID age trim.

Sized for the longest consumer outage we plan for plus the rebuild window (about 60 B per entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec


class StreamRetention(msgspec.Struct, frozen=True):
    maxlen: int
    max_age_s: int


DEFAULTS: Final[Mapping[str, StreamRetention]] = {
    "trades": StreamRetention(maxlen=2_000_000, max_age_s=24 * 3600),
    "book": StreamRetention(maxlen=1_000_000, max_age_s=6 * 3600),
    "bars": StreamRetention(maxlen=200_000, max_age_s=7 * 24 * 3600),
    "profile": StreamRetention(maxlen=100_000, max_age_s=3 * 24 * 3600),
    "bookstats": StreamRetention(maxlen=500_000, max_age_s=6 * 3600),
    "consumption": StreamRetention(maxlen=500_000, max_age_s=6 * 3600),
    "patterns": StreamRetention(maxlen=100_000, max_age_s=30 * 24 * 3600),
    "signals": StreamRetention(maxlen=100_000, max_age_s=30 * 24 * 3600),
    "tradeevents": StreamRetention(maxlen=100_000, max_age_s=90 * 24 * 3600),
    "dlq": StreamRetention(maxlen=100_000, max_age_s=14 * 24 * 3600),
    "bias": StreamRetention(maxlen=100_000, max_age_s=90 * 24 * 3600),
    # A snapshot stream: only its latest entry matters (approximate trim keeps a few more).
    "status": StreamRetention(maxlen=1, max_age_s=7 * 24 * 3600),
}
FALLBACK: Final = StreamRetention(maxlen=100_000, max_age_s=24 * 3600)


def for_kind(kind: str) -> StreamRetention:
    return DEFAULTS.get(kind, FALLBACK)
