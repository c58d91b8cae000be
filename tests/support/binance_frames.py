"""Real recorded fixtures as Bybit v5 frames: the Binance spot capture converted at test time, and
the real Bybit XRPUSDT ob500 archive, both as ``(recv_ns, frame)`` pairs in capture order.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.real_data import BINANCE_SPOT, BYBIT_XRP_OB500, REAL_DATA, require

__all__ = ["BINANCE_SPOT", "BYBIT_XRP_OB500", "REAL_DATA", "require"]


class CaptureGap(AssertionError):
    """The capture's depth diffs do not chain: a converted book would be silently wrong."""


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def binance_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(local_ns, json)`` of every line of an hftbacktest capture."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            stamp, sep, text = line.rstrip("\n").partition(" ")
            if not sep:
                raise ValueError(f"{path}:{lineno}: expected '<local_ns> <json>'")
            yield int(stamp), json.loads(text)


class _Converter:
    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.topic = f"orderbook.{depth}.{symbol}"
        self.pending: list[dict[str, Any]] = []  # diffs received before the snapshot
        self.last_update_id: int | None = None  # Binance ``u`` of the last emitted diff
        self.synced = False  # a diff has been emitted after the snapshot
        self.bybit_u = 0
        self.last_event_ms = 0

    def trade(self, t: dict[str, Any]) -> bytes:
        row = {
            "T": t["T"],
            "s": self.symbol,
            "S": "Sell" if t["m"] else "Buy",
            "v": t["q"],
            "p": t["p"],
            "i": str(t["t"]),
            "BT": False,
            "seq": t["t"],
        }
        topic = f"publicTrade.{self.symbol}"
        return _frame({"topic": topic, "type": "snapshot", "ts": t["E"], "data": [row]})

    def snapshot(self, snap: dict[str, Any]) -> list[bytes]:
        if self.last_update_id is not None:
            raise CaptureGap("a second REST snapshot: this converter expects exactly one")
        self.last_update_id = snap["lastUpdateId"]
        self.bybit_u = snap["lastUpdateId"]
        assert self.bybit_u != 1, "u == 1 would read as a Bybit reset"
        data = {
            "s": self.symbol,
            "b": snap["bids"][: self.depth],
            "a": snap["asks"][: self.depth],
            "u": self.bybit_u,
            "seq": snap["lastUpdateId"],
        }
        out = [
            _frame(
                {"topic": self.topic, "type": "snapshot", "ts": self.last_event_ms, "data": data}
            )
        ]
        for diff in self.pending:
            out += self.diff(diff)
        self.pending = []
        return out

    def diff(self, d: dict[str, Any]) -> list[bytes]:
        last = self.last_update_id
        if last is None:
            self.pending.append(d)
            return []
        if not self.synced and d["U"] <= last + 1:  # the first diff after the snapshot
            if d["u"] <= last:
                return []  # already in the snapshot
        elif d["U"] != last + 1:
            raise CaptureGap(f"depth diff U={d['U']} u={d['u']} does not follow update id {last}")
        self.synced = True
        self.last_update_id = d["u"]
        self.bybit_u += 1
        data = {"s": self.symbol, "b": d["b"], "a": d["a"], "u": self.bybit_u, "seq": d["u"]}
        return [_frame({"topic": self.topic, "type": "delta", "ts": d["E"], "data": data})]


def binance_to_bybit(
    path: Path = BINANCE_SPOT, *, symbol: str = "BTCUSDT", depth: int = 1000
) -> Iterator[tuple[int, bytes]]:
    """The Binance capture as Bybit v5 ``(recv_ns, frame)`` pairs.

    The Binance capture (hftbacktest format, ``<local_ns> <json>`` per line) maps to Bybit as:

    * ``btcusdt@trade`` → one ``publicTrade.BTCUSDT`` frame per trade: ``S`` = "Sell" when ``m``
      (the buyer was the maker, so the seller was the aggressor) else "Buy", ``i`` = trade id,
      ``T`` = trade time, ``seq`` = the trade id (increasing), ``ts`` = event time ``E``;
    * the REST depth snapshot → an ``orderbook.{depth}.BTCUSDT`` snapshot with ``u`` = its
      ``lastUpdateId`` and ``ts`` = the newest ``E`` received before it (REST carries no time);
    * ``btcusdt@depth@100ms`` → one delta per diff with ``u`` = previous ``u`` + 1 and ``seq`` =
      Binance's last update id; no ``cts`` (so the parser's ``ts`` fallback runs). Diffs older than
      the snapshot are dropped, diffs that arrived before it but reach past it are emitted right
      after it (with its receive time), as Binance's own sync procedure prescribes;
    * ``btcusdt@bookTicker`` has no Bybit counterpart and is skipped.

    Binance diffs cover the whole book, not a top-N window: levels outside Bybit's depth window
    arrive as inserts and deletes the parser must truncate or tolerate.
    """
    conv = _Converter(symbol, depth)
    for recv_ns, obj in binance_lines(require(path)):
        if "lastUpdateId" in obj:
            for frame in conv.snapshot(obj):
                yield recv_ns, frame
            continue
        stream, data = obj["stream"], obj["data"]
        if "E" in data:
            conv.last_event_ms = max(conv.last_event_ms, data["E"])
        if stream.endswith("@trade"):
            yield recv_ns, conv.trade(data)
        elif "@depth" in stream:
            for frame in conv.diff(data):
                yield recv_ns, frame
    if conv.last_update_id is None:
        raise CaptureGap(f"{path}: no REST depth snapshot in the capture")


def bybit_archive_frames(path: Path = BYBIT_XRP_OB500) -> Iterator[tuple[int, bytes]]:
    """Bybit's historical order-book archive lines as ``(recv_ns, frame)`` pairs.

    The archive records no receive time; the frame's own ``ts`` (Bybit's push time, ms) stands in.
    """
    with require(path).open("rb") as f:
        for line in f:
            frame = line.strip()
            if frame:
                yield json.loads(frame)["ts"] * 1_000_000, frame
