"""The WebSocket endpoint ``/ws``: token by header or first message, subscriptions of channels ×
instruments, snapshot first, then updates with per-(channel, instrument) sequence numbers.

Each client has its own outbox and sender: a slow one is closed with a reason, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any, Final

import msgspec
from fastapi import WebSocket, WebSocketDisconnect

from of_api import apimetrics
from of_api.auth import bearer_of, token_matches
from of_api.channels import CHANNELS, Routed
from of_api.context import ApiContext
from of_api.outbox import Outbox, Outgoing
from of_api.snapshots import snapshot
from ofcommon import entry_ids

log = logging.getLogger("of_api.ws")

CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW: Final = 4008
RAW_SEND: Final = "of_api.raw_send"  # the server's own ASGI send (see app.KeepRawSend)
_encoder = msgspec.json.Encoder()


def intervals(ctx: ApiContext) -> dict[str, float]:
    s = ctx.settings
    return {
        "tick": s.api_tick_ms / 1000,
        "orderbook": s.api_orderbook_ms / 1000,
        "delta": s.api_delta_ms / 1000,
        "candle": s.api_candle_ms / 1000,
        "volume_profile": s.api_profile_ms / 1000,
        "stats": 0.0,
    }


def _newer(entry_id: str, top: str) -> bool:
    if not entry_id or not top:
        return True
    return entry_ids.parse(entry_id) > entry_ids.parse(top)


class Connection:
    """One authenticated client: its subscriptions, outbox and sender."""

    def __init__(self, ws: WebSocket, ctx: ApiContext) -> None:
        self.ws = ws
        self.ctx = ctx
        self.outbox = Outbox(ctx.settings.api_ws_queue, intervals(ctx))
        self.wake = asyncio.Event()
        self.kicked = asyncio.Event()
        self.subscribed: set[tuple[str, str]] = set()
        self.priming: dict[tuple[str, str], list[tuple[str, Routed, str]]] = {}
        self.next_wake = 0.0  # when the sender wakes on its own (inf: only when woken)
        self.sent: dict[tuple[str, str, str], int] = {}  # version of each conflated key sent
        self.floor: dict[tuple[str, str], int] = {}  # versions up to the snapshot are in it
        self.due_at: dict[tuple[str, str, str], float] = {}
        self.intervals = intervals(ctx)

    # --- from the hub ----------------------------------------------------------------------

    def offer(
        self, symbol: str, kind: str, routed: Routed, entry_id: str, raw: bytes = b""
    ) -> None:
        key = (routed.channel, symbol)
        if key in self.priming:
            self.priming[key].append((kind, routed, entry_id))
            return
        self._put(symbol, kind, routed, entry_id, raw)

    def _put(self, symbol: str, kind: str, routed: Routed, entry_id: str, raw: bytes = b"") -> None:
        msg = Outgoing(routed.channel, symbol, routed.data, entry_id, kind=kind, raw=raw)
        ckey = (routed.channel, symbol, routed.sub)
        if routed.critical:
            if not self.outbox.put_critical(msg, ckey):
                self.kicked.set()
        else:
            before = self.outbox.superseded.get(routed.channel, 0)
            self.outbox.put_latest(ckey, msg)
            if self.outbox.superseded.get(routed.channel, 0) > before:
                apimetrics.WS_SUPERSEDED.labels(routed.channel).inc()
            if self.outbox.due.get(ckey, 0.0) >= self.next_wake:
                return  # the sender wakes by then anyway: no task switch per update
        self.wake.set()

    def control(self, channel: str, data: Any) -> None:
        """A reply of the server itself (pong, subscribed, error): queued as critical."""
        if not self.outbox.put_critical(Outgoing(channel, "", data)):
            self.kicked.set()
        self.wake.set()

    # --- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channels: list[str], symbols: list[str]) -> None:
        hub = self.ctx.hub
        new = []
        for ch in channels:
            for sym in symbols:
                key = (ch, sym)
                if key in self.subscribed:
                    continue
                self.subscribed.add(key)
                self.priming[key] = []
                hub.add(ch, sym, self)
                new.append(key)
        self.control("subscribed", {"channels": channels, "symbols": symbols, "new": len(new)})
        for ch, sym in new:
            data, tops = await snapshot(self.ctx, ch, sym)
            self.floor[(ch, sym)] = hub.version
            if not self.outbox.put_critical(Outgoing(ch, sym, data, snapshot=True)):
                self.kicked.set()
            for kind, routed, entry_id in self.priming.pop((ch, sym), []):
                if _newer(entry_id, tops.get(kind, "")):
                    self._put(sym, kind, routed, entry_id)
            self.wake.set()

    def unsubscribe(self, channels: list[str], symbols: list[str]) -> None:
        for ch in channels:
            for sym in symbols:
                if (ch, sym) in self.subscribed:
                    self.subscribed.discard((ch, sym))
                    self.priming.pop((ch, sym), None)
                    self.ctx.hub.remove(ch, sym, self)
                    self.outbox.forget(ch, sym)
                    self.floor.pop((ch, sym), None)
                    for key in [k for k in self.sent if k[:2] == (ch, sym)]:
                        del self.sent[key]
        self.control("unsubscribed", {"channels": channels, "symbols": symbols})

    # --- loops -----------------------------------------------------------------------------

    def poll(self, now: float) -> tuple[list[Outgoing], float | None]:
        """The hub's latest conflated updates this client has not had and may have now, and
        when the next one is due (None: nothing newer waits; the sender then polls at its
        shortest interval)."""
        out: list[Outgoing] = []
        later: float | None = None
        latest = self.ctx.hub.latest
        for cs in self.subscribed:
            slots = latest.get(cs)
            if not slots or cs in self.priming:
                continue
            floor = self.floor.get(cs, 0)
            for sub, (version, msg) in slots.items():
                key = (cs[0], cs[1], sub)
                if version <= self.sent.get(key, floor):
                    continue
                at = self.due_at.get(key, 0.0)
                if at <= now:
                    out.append(msg)
                    self.sent[key] = version
                    self.due_at[key] = now + self.intervals.get(cs[0], 0.0)
                elif later is None or at < later:
                    later = at
        return out, later

    def _poll_every(self) -> float | None:
        found = [self.intervals.get(ch, 0.0) for ch, _ in self.subscribed]
        found = [x for x in found if x > 0]
        return min(found) if found else None

    async def send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            items, later = self.outbox.take(now)
            polled, due = self.poll(now)
            items += polled
            every = self._poll_every()
            for t in (due, None if every is None else now + every):
                if t is not None and (later is None or t < later):
                    later = t
            if items:
                for msg in items:
                    await self.ws.send_text(self.encode(msg))
                    apimetrics.WS_SENT.labels(msg.channel).inc()
                continue
            self.wake.clear()
            self.next_wake = math.inf if later is None else later
            timeout = None if later is None else max(0.0, later - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.next_wake = 0.0

    def encode(self, msg: Outgoing) -> str:
        envelope: dict[str, Any] = {
            "channel": msg.channel,
            "symbol": msg.symbol,
            "seq": self.outbox.number(msg),
            "snapshot": msg.snapshot,
            "id": msg.entry_id,
            "ts": int(time.time() * 1000),
        }
        if msg.raw:  # the data was encoded once by the hub: splice it in
            head = _encoder.encode(envelope)
            return (head[:-1] + b',"data":' + msg.raw + b"}").decode()
        envelope["data"] = msg.data
        return _encoder.encode(envelope).decode()

    async def receive_loop(self) -> None:
        while True:
            text = await self.ws.receive_text()
            await self.handle(text)

    async def handle(self, text: str) -> None:
        if text.strip() == "ping":
            self.control("pong", {})
            return
        try:
            req = msgspec.json.decode(text)
        except msgspec.DecodeError as err:
            self.control("error", {"reason": f"not JSON: {err}"})
            return
        if not isinstance(req, dict):
            self.control("error", {"reason": "expected a JSON object with an 'op'"})
            return
        op = req.get("op")
        if op == "ping":
            self.control("pong", {})
            return
        if op not in ("subscribe", "unsubscribe"):
            self.control("error", {"reason": f"unknown op {op!r}: subscribe, unsubscribe or ping"})
            return
        channels = self._names(req.get("channels"), CHANNELS, "channel")
        symbols = self._names(req.get("symbols"), [i.symbol for i in self.ctx.served], "instrument")
        if channels is None or symbols is None:
            return
        if op == "subscribe":
            await self.subscribe(channels, symbols)
        else:
            self.unsubscribe(channels, symbols)

    def _names(self, given: Any, names: Any, what: str) -> list[str] | None:
        known: list[str] = list(names)
        if given == "*" or given == ["*"]:
            return known
        if not isinstance(given, list) or not given or not all(isinstance(g, str) for g in given):
            self.control("error", {"reason": f"'{what}s' must be a non-empty list of names or '*'"})
            return None
        unknown = [g for g in given if g not in known]
        if unknown:
            self.control("error", {"reason": f"unknown {what}(s): {', '.join(unknown)}"})
            return None
        chosen: list[str] = list(dict.fromkeys(given))
        return chosen


async def _authenticate(ws: WebSocket, ctx: ApiContext) -> bool:
    expected = ctx.settings.api_token.get()
    header = bearer_of(ws.headers.get("authorization"))
    await ws.accept()
    if header is not None:
        if token_matches(expected, header):
            return True
        await ws.close(CLOSE_UNAUTHORIZED, "invalid bearer token")
        return False
    try:
        text = await asyncio.wait_for(ws.receive_text(), ctx.settings.api_ws_auth_timeout_s)
    except TimeoutError:
        await ws.close(CLOSE_UNAUTHORIZED, "authentication required: send {op: auth, token}")
        return False
    try:
        req = msgspec.json.decode(text)
    except msgspec.DecodeError:
        req = None
    token = req.get("token") if isinstance(req, dict) and req.get("op") == "auth" else None
    if isinstance(token, str) and token_matches(expected, token):
        return True
    await ws.close(CLOSE_UNAUTHORIZED, "invalid or missing token in the first message")
    return False


async def _hard_close(ws: WebSocket, code: int, reason: str) -> None:
    """Close even when the client reads nothing: a close frame queued behind the unread data,
    then the transport closed (the handshake is not waited for)."""
    try:
        await asyncio.wait_for(ws.close(code, reason), 1.0)
        return
    except (TimeoutError, RuntimeError, WebSocketDisconnect, OSError):
        pass
    proto = getattr(ws.scope.get(RAW_SEND), "__self__", None)
    conn, transport = getattr(proto, "conn", None), getattr(proto, "transport", None)
    if conn is not None and transport is not None and not transport.is_closing():
        with contextlib.suppress(Exception):
            conn.send_close(code, reason)
            transport.write(b"".join(conn.data_to_send()))
        transport.close()


async def endpoint(ws: WebSocket) -> None:
    ctx: ApiContext = ws.app.state.ctx
    if not await _authenticate(ws, ctx):
        return
    conn = Connection(ws, ctx)
    hub = ctx.hub
    hub.clients += 1
    apimetrics.WS_CLIENTS.inc()
    conn.control("hello", {"channels": list(CHANNELS), "symbols": [i.symbol for i in ctx.served]})
    tasks = [
        asyncio.create_task(conn.send_loop(), name="ws-send"),
        asyncio.create_task(conn.receive_loop(), name="ws-receive"),
        asyncio.create_task(conn.kicked.wait(), name="ws-kick"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not isinstance(exc, WebSocketDisconnect | RuntimeError | OSError):
                    log.error("websocket client failed", exc_info=exc)
    finally:
        hub.remove_all(conn)
        hub.clients -= 1
        apimetrics.WS_CLIENTS.dec()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    if conn.kicked.is_set():
        reason = conn.outbox.overflow or "slow consumer"
        apimetrics.WS_DISCONNECTS.labels("slow_consumer").inc()
        log.warning("closing a slow websocket client: %s", reason)
        await _hard_close(ws, CLOSE_SLOW, reason)
