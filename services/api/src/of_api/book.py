"""A plain L2 book image kept from the book stream (snapshots, deltas, quotes), for /orderbook.

Levels are price → size per side; size 0 deletes; a Gap invalidates until the next snapshot.
"""

from __future__ import annotations

from typing import Any

from ofcommon.messages import BookDelta, BookSnapshot, Gap, Message, Quote


class BookImage:
    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.valid = False
        self.ts_event = 0
        self.seq = 0

    def apply(self, msg: Message) -> bool:
        """Fold one book-stream message; True if the image changed."""
        if isinstance(msg, BookSnapshot):
            self.bids = {p: s for p, s in msg.bids if s > 0}
            self.asks = {p: s for p, s in msg.asks if s > 0}
            self.valid, self.seq = True, msg.seq
        elif isinstance(msg, BookDelta):
            if not self.valid or (self.seq and msg.seq != self.seq + 1):
                self.valid = False
                return False
            for side, levels in ((self.bids, msg.bids), (self.asks, msg.asks)):
                for p, s in levels:
                    if s > 0:
                        side[p] = s
                    else:
                        side.pop(p, None)
            self.seq = msg.seq
        elif isinstance(msg, Quote):
            self.bids = {msg.bid: msg.bid_size} if msg.bid > 0 else {}
            self.asks = {msg.ask: msg.ask_size} if msg.ask > 0 else {}
            self.valid = bool(self.bids and self.asks)
        elif isinstance(msg, Gap) and msg.stream == "book":
            self.valid = False
            return True
        else:
            return False
        self.ts_event = msg.ts_event
        return True

    def view(self, levels: int) -> dict[str, Any]:
        """The top ``levels`` of each side with best prices, mid, spread and top-5 imbalance."""
        if not self.valid:
            return {"valid": False, "ts_event": self.ts_event, "bids": [], "asks": []}
        bids = sorted(self.bids.items(), reverse=True)[:levels]
        asks = sorted(self.asks.items())[:levels]
        best_bid = bids[0][0] if bids else None
        best_ask = asks[0][0] if asks else None
        b5 = sum(s for _, s in bids[:5])
        a5 = sum(s for _, s in asks[:5])
        both = best_bid is not None and best_ask is not None
        return {
            "valid": True,
            "ts_event": self.ts_event,
            "timestamp_ms": self.ts_event // 1_000_000,
            "bids": [{"price": p, "quantity": s} for p, s in bids],
            "asks": [{"price": p, "quantity": s} for p, s in asks],
            "best_bid": best_bid,
            "best_ask": best_ask,
            "mid_price": (best_bid + best_ask) / 2 if both else None,  # type: ignore[operator]
            "spread": best_ask - best_bid if both else None,  # type: ignore[operator]
            "imbalance": round((b5 - a5) / (b5 + a5), 4) if b5 + a5 > 0 else 0.0,
        }
