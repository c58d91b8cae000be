"""The WebSocket hub: follows every served instrument's streams with plain XREAD (no consumer
group, so each API replica reads for itself) and fans each entry out to the subscribed clients.

It also keeps each instrument's L2 book image from the book stream, for /api/orderbook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final, Protocol

import msgspec
from redis.exceptions import RedisError

from of_api import apimetrics
from of_api.book import BookImage
from of_api.channels import CHANNELS, KINDS, Routed, route
from of_api.outbox import Outgoing
from ofcommon import codec, keys
from ofcommon.bus import Redis
from ofcommon.messages import Message, Trade

log = logging.getLogger("of_api.hub")
_encoder = msgspec.json.Encoder()

BOOK_SCAN: Final = 200_000  # book entries looked back through for the last snapshot at start
_PAGE: Final = 2000


class Subscriber(Protocol):
    def offer(
        self, symbol: str, kind: str, routed: Routed, entry_id: str, raw: bytes = b""
    ) -> None: ...


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Hub:
    def __init__(
        self, redis: Redis, symbols: Iterable[str], *, read_count: int = 1000, block_ms: int = 1000
    ) -> None:
        self.redis = redis
        self.symbols = tuple(symbols)
        self.read_count = read_count
        self.block_ms = block_ms
        self.books: dict[str, BookImage] = {s: BookImage() for s in self.symbols}
        self.last_price: dict[str, float] = {}
        self.last_event: dict[str, int] = {}
        self.entries: Counter[str] = Counter()  # per stream kind, since start
        self.undecodable = 0
        self.subs: dict[tuple[str, str], set[Subscriber]] = {}
        self.positions: dict[Any, Any] = {}
        self.ready = asyncio.Event()
        self.clients = 0
        # the latest conflated update per (channel, symbol) and sub-key, with its version
        self.latest: dict[tuple[str, str], dict[str, tuple[int, Outgoing]]] = {}
        self.version = 0
        self._superseded = {ch: apimetrics.WS_SUPERSEDED.labels(ch) for ch in CHANNELS}

    # --- subscriptions ---------------------------------------------------------------------

    def add(self, channel: str, symbol: str, sub: Subscriber) -> None:
        self.subs.setdefault((channel, symbol), set()).add(sub)

    def remove(self, channel: str, symbol: str, sub: Subscriber) -> None:
        found = self.subs.get((channel, symbol))
        if found is not None:
            found.discard(sub)
            if not found:
                del self.subs[(channel, symbol)]

    def remove_all(self, sub: Subscriber) -> None:
        for key in list(self.subs):
            self.remove(key[0], key[1], sub)

    # --- reading ---------------------------------------------------------------------------

    async def start_positions(self) -> None:
        """Every followed stream's current top (new entries only) and the books' last image."""
        pipe = self.redis.pipeline(transaction=False)
        names = [keys.stream(s, k) for s in self.symbols for k in KINDS]
        for name in names:
            pipe.xrevrange(name, "+", "-", count=1)
        replies: list[Any] = await pipe.execute()
        for name, reply in zip(names, replies, strict=True):
            self.positions[name] = _s(reply[0][0]) if reply else "0-0"
            if reply and name.endswith(":trades"):  # the last price, before any new trade
                msg = self._decode(reply[0][1])
                if isinstance(msg, Trade):
                    symbol, _ = keys.parse_stream(name)
                    self.last_price[symbol] = msg.price
                    self.last_event[symbol] = msg.ts_event
        for symbol in self.symbols:
            await self._load_book(symbol)
        self.ready.set()

    async def _load_book(self, symbol: str) -> None:
        """Fold the book stream from its last snapshot (within BOOK_SCAN entries) to the top."""
        key = keys.stream(symbol, "book")
        top = self.positions[key]
        if top == "0-0":
            return
        found: str | None = None
        scanned, cursor = 0, top
        while scanned < BOOK_SCAN and found is None:
            reply: Any = await self.redis.xrevrange(key, cursor, "-", count=_PAGE)
            if not reply:
                break
            for raw_id, fields in reply:
                data = fields.get(codec.FIELD)
                if data is not None and data[:20].find(b"book_snapshot") >= 0:
                    found = _s(raw_id)
                    break
            scanned += len(reply)
            cursor = "(" + _s(reply[-1][0])
        if found is None:
            return
        book = self.books[symbol]
        cursor = found
        while True:
            chunk: Any = await self.redis.xrange(key, cursor, top, count=_PAGE)
            for _, fields in chunk:
                msg = self._decode(fields)
                if msg is not None:
                    book.apply(msg)
            if len(chunk) < _PAGE:
                break
            cursor = "(" + _s(chunk[-1][0])

    def _decode(self, fields: Any) -> Message | None:
        data = fields.get(codec.FIELD) if fields else None
        if data is None:
            self.undecodable += 1
            return None
        try:
            return codec.decode(data)
        except codec.DecodeError:
            self.undecodable += 1
            return None

    async def run(self, stop: asyncio.Event) -> None:
        if not self.ready.is_set():
            await self.start_positions()
        delay = 0.2
        while not stop.is_set():
            try:
                reply: Any = await self.redis.xread(
                    self.positions, count=self.read_count, block=self.block_ms
                )
                delay = 0.2
            except (OSError, RedisError) as err:
                log.warning("hub read failed: %s; retrying in %.1f s", err, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            for raw_key, entries in reply or ():
                name = _s(raw_key)
                symbol, kind = keys.parse_stream(name)
                for n, (raw_id, fields) in enumerate(entries, 1):
                    entry_id = _s(raw_id)
                    self.positions[name] = entry_id
                    msg = self._decode(fields)
                    if msg is not None:
                        self.dispatch(symbol, kind, entry_id, msg)
                    if n % 50 == 0:
                        await asyncio.sleep(0)  # let the senders run within a long read
                await asyncio.sleep(0)

    def dispatch(self, symbol: str, kind: str, entry_id: str, msg: Message) -> None:
        self.entries[kind] += 1
        if kind == "book":
            self.books[symbol].apply(msg)
            return
        if isinstance(msg, Trade):
            self.last_price[symbol] = msg.price
            self.last_event[symbol] = msg.ts_event
        for routed in route(msg):
            cs = (routed.channel, symbol)
            subs = self.subs.get(cs)
            if not subs:
                continue
            raw = _encoder.encode(routed.data)  # once, for every client
            if not routed.critical:
                # conflated: one shared slot per key, the latest wins; each client's sender
                # takes it when due (no work per client and update)
                self.version += 1
                slots = self.latest.setdefault(cs, {})
                if routed.sub in slots:
                    self._superseded[routed.channel].inc()
                slots[routed.sub] = (
                    self.version,
                    Outgoing(routed.channel, symbol, routed.data, entry_id, kind=kind, raw=raw),
                )
                continue
            held = self.latest.get(cs)
            if held is not None:
                held.pop(routed.sub, None)  # a close supersedes the partial of its key
            for sub in tuple(subs):
                sub.offer(symbol, kind, routed, entry_id, raw)

    def stats(self, symbol: str) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "price": self.last_price.get(symbol),
            "ts_event": self.last_event.get(symbol),
            "book_valid": self.books[symbol].valid if symbol in self.books else False,
            "ws_clients": self.clients,
            "wall_ms": int(time.time() * 1000),
        }

    def tick_stats(self) -> None:
        """Offer each subscribed instrument's stats (the stats channel, conflated)."""
        for (channel, symbol), subs in list(self.subs.items()):
            if channel != "stats":
                continue
            routed = Routed("stats", "", False, self.stats(symbol))
            for sub in tuple(subs):
                sub.offer(symbol, "", routed, "")

    async def run_stats(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            self.tick_stats()
