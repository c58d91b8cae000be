"""Stream retention: the length cap and the age limit of each kind agree at its design rate, and
docs/streams.md shows the figures the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from ofcommon import keys, retention

DOCS = Path(__file__).resolve().parents[2] / "docs" / "streams.md"


def test_every_stream_kind_has_a_retention_sized_from_a_rate() -> None:
    assert set(retention.DEFAULTS) == set(keys.STREAM_KINDS)
    for kind, r in retention.DEFAULTS.items():
        assert r.rate_per_s > 0, kind
        # MAXLEN holds the age at the rate, to one entry: neither limit is dead weight.
        assert r.rate_per_s * r.max_age_s <= r.maxlen < r.rate_per_s * r.max_age_s + 1, kind


def test_bars_keep_their_age_at_four_partials_a_second() -> None:
    # The old table said 200,000 bars and 7 days: at ~4 partials/s that held under 14 h.
    bars = retention.for_kind("bars")
    assert bars.maxlen / 4 >= bars.max_age_s


def test_the_streams_doc_shows_the_retention_in_use() -> None:
    text = DOCS.read_text()
    for kind, r in retention.DEFAULTS.items():
        row = next(
            line for line in text.splitlines() if line.startswith(f"| `of:{{SYM}}:{kind}` |")
        )
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        m = re.fullmatch(r"([\d,]+) / (\d+) ([hd]) \(([\d.]+)/s\)", cell)
        assert m is not None, row
        age_s = int(m[2]) * (3600 if m[3] == "h" else 86_400)
        assert (int(m[1].replace(",", "")), age_s, float(m[4])) == (
            r.maxlen,
            r.max_age_s,
            r.rate_per_s,
        ), kind
