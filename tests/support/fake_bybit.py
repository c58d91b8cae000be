"""A Bybit v5 public WebSocket + REST server on loopback: real frames replayed, faults on demand.

The market runs on its own clock whether or not anyone is connected (what a reconnecting client
misses is only recoverable through REST), and every topic is served at the subscribed depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.support.real_data import BYBIT_XRP_OB500, require

BOOK_FIXTURE: Final = BYBIT_XRP_OB500

DEPTHS: Final[Mapping[str, frozenset[int]]] = {
    "linear": frozenset({1, 50, 200, 1000}),
    "inverse": frozenset({1, 50, 200, 1000}),
    "spot": frozenset({1, 50, 200, 1000}),
}
_ARGS_CHARS_MAX: Final = 21_000
_SPOT_ARGS_MAX: Final = 10

Frame = dict[str, Any]


def load_book_frames(path: Path = BOOK_FIXTURE) -> list[Frame]:
    """The real XRPUSDT ob500 capture: one snapshot, then 49 deltas (full depth, 500 a side)."""
    return [json.loads(line) for line in require(path).read_text().splitlines() if line.strip()]


def instrument_row(
    symbol: str, tick: str, qty_step: str, *, category: str = "linear", status: str = "Trading"
) -> Frame:
    """An instruments-info row in the category's real shape (spot has basePrecision, no qtyStep)."""
    lot: Frame = (
        {"basePrecision": qty_step, "quotePrecision": "0.0000001", "minOrderQty": qty_step}
        if category == "spot"
        else {"qtyStep": qty_step, "minOrderQty": qty_step, "maxOrderQty": "1000000"}
    )
    row: Frame = {
        "symbol": symbol,
        "status": status,
        "baseCoin": symbol.removesuffix("USDT"),
        "quoteCoin": "USDT",
        "priceFilter": {"tickSize": tick, "minPrice": tick, "maxPrice": "1999999"},
        "lotSizeFilter": lot,
    }
    if category != "spot":
        row |= {"contractType": "LinearPerpetual", "symbolType": ""}
    return row


def binance_timelines(
    category: str = "linear",
    *,
    frames: int = 2000,
    skip: int = 0,
    trades_per_frame: int = 10,
    symbol: str = "BTCUSDT",
    book: bool = True,
) -> tuple[TradeTimeline, BookTimeline | None]:
    """The real Binance BTCUSDT capture as Bybit timelines: ``frames`` capture lines after
    ``skip``, trades regrouped ``trades_per_frame`` to a frame (Bybit sends up to 1,024)."""
    from tests.support.binance_frames import binance_to_bybit

    trade_rows: list[Frame] = []
    book_frames: list[Frame] = []
    for _, raw in itertools.islice(binance_to_bybit(symbol=symbol), skip, skip + frames):
        frame = json.loads(raw)
        if frame["topic"].startswith("publicTrade."):
            trade_rows.extend(frame["data"])
        elif book and (book_frames or frame["type"] == "snapshot"):
            book_frames.append(frame)
    trade_frames = [
        {
            "topic": f"publicTrade.{symbol}",
            "type": "snapshot",
            "ts": int(chunk[-1]["T"]) + 1,
            "data": chunk,
        }
        for chunk in (
            trade_rows[i : i + trades_per_frame]
            for i in range(0, len(trade_rows), trades_per_frame)
        )
    ]
    trades = TradeTimeline(category, trade_frames)
    return trades, (BookTimeline(category, book_frames) if book_frames else None)


def _dec(text: str) -> Decimal:
    return Decimal(text)


class _BookSide:
    """One side of the full-depth book, keyed by the venue's price strings."""

    def __init__(self, descending: bool) -> None:
        self.levels: dict[str, str] = {}
        self._descending = descending

    def apply(self, rows: Iterable[Sequence[str]]) -> None:
        for price, size in rows:
            if _dec(size) == 0:
                self.levels.pop(price, None)
            else:
                self.levels[price] = size

    def top(self, depth: int) -> dict[str, str]:
        keys = sorted(self.levels, key=_dec, reverse=self._descending)[:depth]
        return {k: self.levels[k] for k in keys}


def _diff(old: Mapping[str, str], new: Mapping[str, str], descending: bool) -> list[list[str]]:
    rows = [[p, s] for p, s in new.items() if old.get(p) != s]
    rows += [[p, "0"] for p in old if p not in new]
    rows.sort(key=lambda r: _dec(r[0]), reverse=descending)
    return rows


def _levels(side: Mapping[str, str], descending: bool) -> list[list[str]]:
    return [[p, side[p]] for p in sorted(side, key=_dec, reverse=descending)]


class _DepthStream:
    """``orderbook.{depth}.{symbol}`` as Bybit serves it: top-N snapshot, then top-N diffs."""

    def __init__(self, depth: int, bids: dict[str, str], asks: dict[str, str]) -> None:
        self.depth = depth
        self.u = 100_000  # anything but 1: u == 1 means "the service restarted"
        self.bids = bids
        self.asks = asks
        self.drop_next = 0


class BookTimeline:
    """A real full-depth capture replayed one frame per market step."""

    def __init__(self, category: str, frames: Sequence[Frame], symbol: str | None = None) -> None:
        if not frames or frames[0].get("type") != "snapshot":
            raise ValueError("a book timeline starts with a snapshot frame")
        self.category = category
        self.symbol = symbol or str(frames[0]["data"]["s"])
        self.frames = list(frames)
        self.pos = 0
        self.bids = _BookSide(descending=True)
        self.asks = _BookSide(descending=False)
        self.depths: dict[int, _DepthStream] = {}
        self.ts = self.cts = self.seq = 0
        self._apply(self.frames[0])
        self.pos = 1

    @property
    def done(self) -> bool:
        return self.pos >= len(self.frames)

    def topic(self, depth: int) -> str:
        return f"orderbook.{depth}.{self.symbol}"

    def _apply(self, frame: Frame) -> None:
        data = frame["data"]
        if frame["type"] == "snapshot":
            self.bids.levels.clear()
            self.asks.levels.clear()
        self.bids.apply(data.get("b", ()))
        self.asks.apply(data.get("a", ()))
        self.ts = int(frame.get("ts", self.ts))
        self.cts = int(frame.get("cts", self.ts))
        self.seq = int(data.get("seq", self.seq))

    def stream(self, depth: int) -> _DepthStream:
        if depth not in self.depths:
            self.depths[depth] = _DepthStream(depth, self.bids.top(depth), self.asks.top(depth))
        return self.depths[depth]

    def snapshot(self, depth: int) -> Frame:
        st = self.stream(depth)
        return self._frame(st, "snapshot", _levels(st.bids, True), _levels(st.asks, False))

    def _frame(self, st: _DepthStream, kind: str, b: list[list[str]], a: list[list[str]]) -> Frame:
        data = {"s": self.symbol, "b": b, "a": a, "u": st.u, "seq": self.seq}
        return {"topic": self.topic(st.depth), "type": kind, "ts": self.ts, "data": data,
                "cts": self.cts}  # fmt: skip

    def step(self) -> list[tuple[str, Frame | None]]:
        """Apply the next captured frame; the deltas per depth topic (None = lost on purpose)."""
        if self.done:
            return []
        self._apply(self.frames[self.pos])
        self.pos += 1
        return self.republish()

    def republish(self, touch: bool = False) -> list[tuple[str, Frame | None]]:
        out: list[tuple[str, Frame | None]] = []
        for st in self.depths.values():
            bids, asks = self.bids.top(st.depth), self.asks.top(st.depth)
            db, da = _diff(st.bids, bids, True), _diff(st.asks, asks, False)
            if touch and not (db or da) and bids:
                best = next(iter(bids))
                db = [[best, bids[best]]]  # same size again: a valid, content-neutral delta
            st.bids, st.asks = bids, asks
            if not (db or da):
                continue
            st.u += 1
            if st.drop_next:
                st.drop_next -= 1
                out.append((self.topic(st.depth), None))
            else:
                out.append((self.topic(st.depth), self._frame(st, "delta", db, da)))
        return out

    def restart(self) -> list[tuple[str, Frame]]:
        """Bybit's service restart: a snapshot with u = 1 on every depth topic."""
        out = []
        for st in self.depths.values():
            st.u = 1
            out.append((self.topic(st.depth), self.snapshot(st.depth)))
        return out

    def reference(self, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The true top-``depth`` book now, best first, as floats."""
        bids = [(float(p), float(s)) for p, s in _levels(self.bids.top(depth), True)]
        asks = [(float(p), float(s)) for p, s in _levels(self.asks.top(depth), False)]
        return bids, asks


class TradeTimeline:
    """``publicTrade.{symbol}`` frames, one per market step; executed trades stay on REST."""

    def __init__(self, category: str, frames: Sequence[Frame]) -> None:
        if not frames:
            raise ValueError("a trade timeline needs frames")
        self.category = category
        self.frames = list(frames)
        self.symbol = str(self.frames[0]["topic"]).split(".", 1)[1]
        self.pos = 0
        self.executed: list[Frame] = []

    @property
    def topic(self) -> str:
        return f"publicTrade.{self.symbol}"

    @property
    def done(self) -> bool:
        return self.pos >= len(self.frames)

    @property
    def all_ids(self) -> list[str]:
        return [str(t["i"]) for f in self.frames for t in f["data"]]

    def step(self) -> Frame | None:
        if self.done:
            return None
        frame = self.frames[self.pos]
        self.pos += 1
        self.executed.extend(frame["data"])
        return frame

    def recent(self, limit: int) -> list[Frame]:
        """recent-trade rows, newest first, as Bybit's REST returns them."""
        rows = []
        for t in reversed(self.executed[-limit:] if limit else []):
            rows.append(
                {
                    "execId": str(t["i"]),
                    "symbol": t["s"],
                    "price": t["p"],
                    "size": t["v"],
                    "side": t["S"],
                    "time": str(t["T"]),
                    "isBlockTrade": bool(t.get("BT", False)),
                    "isRPITrade": bool(t.get("RPI", False)),
                    "seq": t.get("seq", 0),
                }
            )
        return rows


class _Conn:
    def __init__(self, ws: ServerConnection, category: str, conn_id: str) -> None:
        self.ws = ws
        self.category = category
        self.conn_id = conn_id
        self.topics: set[str] = set()
        self.out: deque[str] = deque()
        self.pending = 0
        self.wake = asyncio.Event()
        self.muted = False


class FakeBybit:
    """The fake venue. Use as ``async with FakeBybit(...) as fake``; point the feed at
    ``fake.ws_url`` (it appends ``/linear`` or ``/spot``) and ``fake.rest_url``.

    The market advances one step every ``interval_s`` once ``start_market()`` is called: each
    book timeline applies its next captured frame, each trade timeline pushes its next frame.
    """

    def __init__(
        self,
        *,
        books: Sequence[BookTimeline] = (),
        trades: Sequence[TradeTimeline] = (),
        instruments: Mapping[str, Sequence[Frame]] | None = None,
        interval_s: float = 0.02,
        pong_shape: str = "native",
        page_size: int = 500,
        max_pending_bytes: int = 8 * 1024 * 1024,
        port: int = 0,
        keep_sent: bool = False,
    ) -> None:
        self.books = {(b.category, b.symbol): b for b in books}
        self.trades = {(t.category, t.symbol): t for t in trades}
        self.instruments = {k: list(v) for k, v in (instruments or {}).items()}
        self.interval_s = interval_s
        self.pong_shape = pong_shape  # native (per category), linear, spot, option or cycle
        self.page_size = page_size
        self.max_pending_bytes = max_pending_bytes
        self.port = port
        self.sent: list[tuple[str, str]] | None = [] if keep_sent else None  # (conn_id, text)
        self.silenced: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, Frame]] = []
        self.rest_log: list[str] = []
        self.rest_faults: deque[tuple[int, str]] = deque()
        self.connections_opened = 0
        self.aborted = 0
        self.slow_aborts = 0
        self.steps = 0
        self._conns: set[_Conn] = set()
        self._ids = itertools.count(1)
        self._pong_cycle = itertools.cycle(("linear", "spot", "option"))
        self._ws: Server | None = None
        self._http: asyncio.Server | None = None
        self._http_tasks: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._market: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._stepped = asyncio.Event()
        self.ws_url = ""
        self.rest_url = ""

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeBybit:
        self._ws = await serve(
            self._handler, "127.0.0.1", self.port, compression=None, ping_interval=None
        )
        port = self._ws.sockets[0].getsockname()[1] if self._ws.sockets else 0
        self.ws_url = f"ws://127.0.0.1:{port}/v5/public"
        self._http = await asyncio.start_server(self._http_conn, "127.0.0.1", 0)
        hport = self._http.sockets[0].getsockname()[1]
        self.rest_url = f"http://127.0.0.1:{hport}"
        self._market = asyncio.create_task(self._run_market(), name="fake-bybit-market")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in [self._market, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._market = None
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
            self._ws = None
        if self._http is not None:
            self._http.close()
            for t in list(self._http_tasks):
                t.cancel()
            for t in list(self._http_tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self._http.wait_closed()
            self._http = None

    # --- market ------------------------------------------------------------------------------

    def start_market(self) -> None:
        self._running.set()

    def pause_market(self) -> None:
        self._running.clear()

    @property
    def market_done(self) -> bool:
        return all(b.done for b in self.books.values()) and all(
            t.done for t in self.trades.values()
        )

    async def wait_market_done(self) -> None:
        while not self.market_done:
            await self._stepped.wait()

    async def wait_steps(self, n: int) -> None:
        target = self.steps + n
        while self.steps < target and not self.market_done:
            await self._stepped.wait()

    async def _run_market(self) -> None:
        while True:
            await self._running.wait()
            self.step()
            await asyncio.sleep(self.interval_s)

    def step(self) -> None:
        self.steps += 1
        stepped, self._stepped = self._stepped, asyncio.Event()
        stepped.set()
        for book in self.books.values():
            for topic, frame in book.step():
                if frame is not None:
                    self._publish(book.category, topic, frame)
        for tl in self.trades.values():
            frame = tl.step()
            if frame is not None:
                self._publish(tl.category, tl.topic, frame)

    def _publish(self, category: str, topic: str, frame: Frame) -> None:
        if (category, topic) in self.silenced:
            return
        text = json.dumps(frame, separators=(",", ":"))
        for conn in list(self._conns):
            if conn.category == category and topic in conn.topics:
                self._push(conn, text)

    # --- faults ------------------------------------------------------------------------------

    def drop_connections(self, category: str | None = None) -> int:
        """Abrupt close: the TCP connection is torn down without a close frame."""
        n = 0
        for conn in list(self._conns):
            if category is None or conn.category == category:
                conn.ws.transport.abort()
                n += 1
        self.aborted += n
        return n

    def lose_book_updates(self, category: str, symbol: str, n: int = 1) -> None:
        """The next ``n`` book deltas of every depth are never sent: a ``u`` gap."""
        for st in self.books[(category, symbol)].depths.values():
            st.drop_next += n

    def restart_book(self, category: str, symbol: str) -> None:
        """Bybit's book service restarts: ``u = 1`` snapshots on every depth topic."""
        book = self.books[(category, symbol)]
        for topic, frame in book.restart():
            self._publish(category, topic, frame)

    def send_raw(self, category: str, text: str) -> int:
        """Push any text (malformed JSON, an unknown topic) to every connection of a category."""
        n = 0
        for conn in list(self._conns):
            if conn.category == category:
                self._push(conn, text)
                n += 1
        return n

    def silence(self, category: str, topic: str) -> None:
        """The venue stops pushing a topic although the market moves (acks/snapshots still work)."""
        self.silenced.add((category, topic))

    def unsilence(self, category: str, topic: str) -> None:
        self.silenced.discard((category, topic))

    def mute_connections(self, category: str) -> int:
        """Open connections of a category go fully silent: no data, no acks, no pongs."""
        n = 0
        for conn in self._conns:
            if conn.category == category:
                conn.muted = True
                n += 1
        return n

    def flood(self, category: str, symbol: str, n: int) -> asyncio.Task[None]:
        """Push ``n`` content-neutral book deltas as fast as the socket takes them."""
        task = asyncio.create_task(self._flood(category, symbol, n))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _flood(self, category: str, symbol: str, n: int) -> None:
        book = self.books[(category, symbol)]
        for i in range(n):
            for topic, frame in book.republish(touch=True):
                if frame is not None:
                    self._publish(category, topic, frame)
            if i % 50 == 49:
                await asyncio.sleep(0)

    def fail_rest(self, n: int = 1, status: int = 403, body: str = "access too frequent") -> None:
        """The next ``n`` REST requests answer ``status`` (403 = Bybit's rate limit)."""
        self.rest_faults.extend([(status, body)] * n)

    def connections(self, category: str | None = None) -> int:
        return sum(1 for c in self._conns if category is None or c.category == category)

    def subscribed(self, category: str) -> set[str]:
        out: set[str] = set()
        for c in self._conns:
            if c.category == category:
                out |= c.topics
        return out

    # --- WebSocket -----------------------------------------------------------------------------

    def _push(self, conn: _Conn, text: str) -> None:
        if conn.muted:
            return
        if conn.pending + len(text) > self.max_pending_bytes:
            # what Bybit does with a client that cannot keep up: drop it
            self.slow_aborts += 1
            conn.out.clear()
            conn.pending = 0
            conn.ws.transport.abort()
            return
        conn.out.append(text)
        conn.pending += len(text)
        conn.wake.set()

    async def _writer(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                while conn.out:
                    text = conn.out.popleft()
                    conn.pending -= len(text)
                    await conn.ws.send(text)
                    if self.sent is not None:
                        self.sent.append((conn.conn_id, text))
                conn.wake.clear()
                await conn.wake.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        category = path.rstrip("/").rsplit("/", 1)[-1]
        if category not in DEPTHS:
            await ws.close(4004, f"unknown category {category!r}")
            return
        conn = _Conn(ws, category, f"fake-{next(self._ids)}")
        self.connections_opened += 1
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for raw in ws:
                if not conn.muted:
                    self._on_request(conn, raw if isinstance(raw, str) else raw.decode())
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _on_request(self, conn: _Conn, raw: str) -> None:
        try:
            req = json.loads(raw)
        except ValueError:
            self._push(conn, json.dumps({"success": False, "ret_msg": "invalid json"}))
            return
        self.requests.append((conn.category, req))
        op = req.get("op")
        if op == "ping":
            self._push(conn, json.dumps(self._pong(conn, req)))
        elif op in ("subscribe", "unsubscribe"):
            self._on_subscribe(conn, req, op)
        else:
            self._push(conn, json.dumps(self._ack(conn, req, False, f"error:unknown op {op}")))

    def _pong(self, conn: _Conn, req: Frame) -> Frame:
        shape = self.pong_shape
        if shape == "native":
            shape = "spot" if conn.category == "spot" else "linear"
        elif shape == "cycle":
            shape = next(self._pong_cycle)
        if shape == "option":
            return {"op": "pong", "args": [str(self.steps)], "conn_id": conn.conn_id}
        pong: Frame = {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id}
        if shape == "linear":
            pong["req_id"] = req.get("req_id", "")
        pong["op"] = "ping"
        return pong

    def _ack(self, conn: _Conn, req: Frame, ok: bool, msg: str = "") -> Frame:
        ack: Frame = {"success": ok}
        if conn.category == "spot":
            ack["ret_msg"] = msg or req.get("op", "")
        else:
            ack["ret_msg"] = msg
        ack["conn_id"] = conn.conn_id
        if "req_id" in req:
            ack["req_id"] = req["req_id"]
        ack["op"] = req.get("op")
        return ack

    def _on_subscribe(self, conn: _Conn, req: Frame, op: str) -> None:
        args = req.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            self._push(conn, json.dumps(self._ack(conn, req, False, "error:args must be a list")))
            return
        if conn.category == "spot" and len(args) > _SPOT_ARGS_MAX:
            self._push(conn, json.dumps(self._ack(conn, req, False, "args size >10")))
            return
        if len("".join(args)) > _ARGS_CHARS_MAX:
            self._push(conn, json.dumps(self._ack(conn, req, False, "args length > 21000")))
            return
        bad = [a for a in args if not self._topic_ok(conn.category, a)]
        if bad:
            msg = f"error:handler not found,topic:{bad[0]}"
            self._push(conn, json.dumps(self._ack(conn, req, False, msg)))
            return
        if op == "unsubscribe":
            conn.topics.difference_update(args)
            self._push(conn, json.dumps(self._ack(conn, req, True)))
            return
        dup = [a for a in args if a in conn.topics]
        if dup:
            msg = f"error:already subscribed,topic:{dup[0]}"
            self._push(conn, json.dumps(self._ack(conn, req, False, msg)))
            return
        conn.topics.update(args)
        self._push(conn, json.dumps(self._ack(conn, req, True)))
        for topic in args:
            if topic.startswith("orderbook."):
                _, depth, symbol = topic.split(".", 2)
                book = self.books.get((conn.category, symbol))
                if book is not None:
                    self._push(conn, json.dumps(book.snapshot(int(depth)), separators=(",", ":")))

    def _topic_ok(self, category: str, topic: str) -> bool:
        parts = topic.split(".")
        if len(parts) == 2 and parts[0] == "publicTrade":
            return self._listed(category, parts[1])
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
            return int(parts[1]) in DEPTHS[category] and self._listed(category, parts[2])
        return False

    def _listed(self, category: str, symbol: str) -> bool:
        if (category, symbol) in self.books or (category, symbol) in self.trades:
            return True
        return any(r.get("symbol") == symbol for r in self.instruments.get(category, ()))

    # --- REST ----------------------------------------------------------------------------------

    async def _http_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._http_tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                close = False
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "connection" and value.strip().lower() == "close":
                        close = True
                status, body = self._route(method, target)
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
                if close:
                    break
        except (ConnectionError, ValueError):
            pass
        finally:
            self._http_tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def _route(self, method: str, target: str) -> tuple[int, bytes]:
        url = urlsplit(target)
        q = dict(parse_qsl(url.query))
        self.rest_log.append(target)
        if self.rest_faults:
            status, body = self.rest_faults.popleft()
            return status, body.encode()
        if method != "GET":
            return 405, b"method not allowed"
        if url.path == "/v5/market/instruments-info":
            return 200, self._ok(self._instruments(q))
        if url.path == "/v5/market/recent-trade":
            return self._recent(q)
        return 404, b"not found"

    def _ok(self, result: Frame) -> bytes:
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 0}
        return json.dumps(body).encode()

    def _instruments(self, q: Mapping[str, str]) -> Frame:
        category = q.get("category", "")
        rows = self.instruments.get(category, [])
        if q.get("symbol"):
            rows = [r for r in rows if r.get("symbol") == q["symbol"]]
        if category == "spot":  # spot has no pagination
            return {"category": category, "list": rows}
        size = min(int(q.get("limit", "500")), self.page_size)
        start = int(q.get("cursor") or 0)
        page = rows[start : start + size]
        cursor = str(start + size) if start + size < len(rows) else ""
        return {"category": category, "list": page, "nextPageCursor": cursor}

    def _recent(self, q: Mapping[str, str]) -> tuple[int, bytes]:
        category = q.get("category", "")
        cap, default = (60, 60) if category == "spot" else (1000, 500)
        limit = int(q.get("limit", default))
        if not 1 <= limit <= cap:
            body = {"retCode": 10001, "retMsg": f"limit must be in [1, {cap}]", "result": {}}
            return 200, json.dumps(body).encode()
        tl = self.trades.get((category, q.get("symbol", "")))
        rows = tl.recent(limit) if tl is not None else []
        return 200, self._ok({"category": category, "list": rows})
