"""Measures, on the real Binance capture, how trade and book timestamps relate (docs/analytics.md).
Prints the print-minus-removal offsets of consumption matches and how far book frames run ahead.
"""

from __future__ import annotations

import bisect
import gzip
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/real/binance/spot_btcusdt_20240808.gz"
SEARCH_MS = 2000  # look this far either side of a removal for a same-size print


def _pct(xs: list[int], q: float) -> int:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


_Capture = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[int]]


def load(path: Path) -> _Capture:
    """Snapshot, depth diffs, trades, and per trade the newest book E before it minus its T."""
    snap: dict[str, Any] = {}
    diffs: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    ahead: list[int] = []  # newest book E seen before a trade arrives, minus the trade's T
    newest_book = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in obj:
                snap = obj
            elif obj["stream"].endswith("@depth@100ms"):
                diffs.append(obj["data"])
                newest_book = max(newest_book, obj["data"]["E"])
            elif obj["stream"].endswith("@trade"):
                trades.append(obj["data"])
                if newest_book:
                    ahead.append(newest_book - obj["data"]["T"])
    return snap, diffs, trades, ahead


def offsets_of(
    snap: dict[str, Any], diffs: list[dict[str, Any]], trades: list[dict[str, Any]]
) -> tuple[int, list[int]]:
    """The number of level removals, and per explained removal the nearest print's T minus E."""
    books = {
        "b": {float(p): float(q) for p, q in snap["bids"]},
        "a": {float(p): float(q) for p, q in snap["asks"]},
    }
    trades.sort(key=lambda t: t["T"])
    times = [t["T"] for t in trades]
    removals = 0
    offsets: list[int] = []
    for d in diffs:
        if d["u"] <= snap["lastUpdateId"]:
            continue
        for side in ("b", "a"):
            book = books[side]
            for p_raw, q_raw in d[side]:
                price, size = float(p_raw), float(q_raw)
                removed = book.get(price, 0.0) - size
                if size == 0:
                    book.pop(price, None)
                else:
                    book[price] = size
                if removed <= 1e-12:
                    continue
                removals += 1
                lo = bisect.bisect_left(times, d["E"] - SEARCH_MS)
                hi = bisect.bisect_right(times, d["E"] + SEARCH_MS)
                # a bid is taken by a selling aggressor (m: the buyer is the maker)
                near = [
                    t["T"] - d["E"]
                    for t in trades[lo:hi]
                    if float(t["p"]) == price
                    and t["m"] == (side == "b")
                    and abs(float(t["q"]) - removed) < 1e-9
                ]
                if near:
                    offsets.append(min(near, key=abs))
    return removals, offsets


def main(path: Path) -> None:
    snap, diffs, trades, ahead = load(path)
    removals, offsets = offsets_of(snap, diffs, trades)
    print(f"removals {removals}, explained by a same-price same-size print: {len(offsets)}")
    print("print - removal (ms):", {q: _pct(offsets, q) for q in (1, 5, 25, 50, 75, 95, 99)})
    for lo_ms in range(-250, 250, 50):
        print(f"  [{lo_ms}, {lo_ms + 50}) ms: {sum(lo_ms <= o < lo_ms + 50 for o in offsets)}")
    late = sum(a > 0 for a in ahead)
    print(f"trades arriving behind a newer book frame: {late} of {len(ahead)}")
    print("book ahead of the arriving trade (ms):", {q: _pct(ahead, q) for q in (50, 90, 99, 100)})


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
