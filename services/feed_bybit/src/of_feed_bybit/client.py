"""One Bybit v5 public WebSocket connection per category: subscribe, ping, watchdogs, reconnect.
Every frame goes raw to an optional recorder and to the parser; its output to a bounded outbox.

Back-pressure: the socket reader never waits for the publisher. Parsed messages go to an
``Outbox`` with a soft limit; when it passes that limit the connection is closed on purpose
(reason ``overflow``) instead of dropping anything already parsed. Closing stops the inflow at
the source, and the recovery is the ordinary reconnect path: gap markers from
``parser.disconnected``, a wait until the outbox drained to half, a fresh connection whose
snapshots rebuild the books, and a REST backfill of the trades missed meanwhile. Nothing is
dropped silently: what is lost is marked by ``Gap`` messages and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from prometheus_client import Counter, Gauge
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from of_feed_bybit.parser import BybitParser, Pong, Resubscribe, SubscribeResult, UnknownTopic
from of_feed_bybit.rest import BybitRest, InstrumentInfo, RestError
from of_feed_bybit.spec import spec_frame
from of_feed_bybit.venueclock import VenueClock
from ofcommon import keys
from ofcommon.clock import Clock
from ofcommon.instruments import Instrument
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Trade
from ofcommon.recording import RecordingWriter
from ofcommon.venue import BadFrame, Published

log = logging.getLogger(__name__)

FRAMES: Final = Counter("of_bybit_frames_total", "WebSocket frames received", ["category"])
RECONNECTS: Final = Counter(
    "of_bybit_reconnects_total",
    "Connections lost or closed on purpose, by reason (closed, error, silent, overflow)",
    ["category", "reason"],
)
CONNECT_FAILURES: Final = Counter(
    "of_bybit_connect_failures_total", "Connection attempts that failed", ["category"]
)
GAPS: Final = Counter(
    "of_bybit_gaps_total", "Gap markers published, by stream kind", ["category", "stream"]
)
MALFORMED: Final = Counter(
    "of_bybit_malformed_frames_total", "Frames the parser refused (dead-lettered)", ["category"]
)
RESUBSCRIBES: Final = Counter(
    "of_bybit_resubscribes_total",
    "Topics unsubscribed and subscribed again, by reason (gap, crossed, no_snapshot, silent)",
    ["category", "reason"],
)
SUBSCRIBE_FAILURES: Final = Counter(
    "of_bybit_subscribe_failures_total", "Subscribe requests Bybit refused", ["category"]
)
UNKNOWN_TOPICS: Final = Counter(
    "of_bybit_unknown_topic_frames_total", "Data frames of topics we did not ask for", ["category"]
)
OVERFLOWS: Final = Counter(
    "of_bybit_outbox_overflows_total",
    "Connections closed because the publisher fell behind (outbox over its limit)",
    ["category"],
)
BACKFILLED: Final = Counter(
    "of_bybit_backfilled_trades_total", "Trades recovered from REST after a reconnect", ["category"]
)
BACKFILL_FAILURES: Final = Counter(
    "of_bybit_backfill_failures_total", "Per-symbol REST backfills that failed", ["category"]
)
CONNECTED: Final = Gauge("of_bybit_connected", "1 while the connection is up", ["category"])
OUTBOX: Final = Gauge(
    "of_bybit_outbox_messages", "Parsed messages waiting for the publisher", ["category"]
)
TOPIC_SILENCE: Final = Gauge(
    "of_bybit_topic_silence_seconds",
    "Seconds since the last frame of a subscribed topic",
    ["category", "topic"],
)

_TOPIC: Final = re.compile(rb'"topic"\s*:\s*"([^"\\]{1,200})"')
_HOT_PREFIX: Final = 160  # Bybit puts "topic" first; look no further on the hot path
_ALREADY: Final = "already subscribed"
_LOG_EVERY_S: Final = 5.0


@dataclass(frozen=True)
class ClientOptions:
    """Timings and limits of a connection (``BybitSettings`` documents each one)."""

    ping_interval_s: float = 20.0
    conn_silence_s: float = 45.0
    book_silence_s: float = 60.0
    trade_silence_s: float = 900.0
    backoff_initial_s: float = 0.5
    backoff_factor: float = 1.5
    backoff_max_s: float = 5.0
    backoff_jitter: float = 0.25
    stable_after_s: float = 60.0
    open_timeout_s: float = 10.0
    ack_timeout_s: float = 10.0
    subscribe_batch: int = 10
    failed_topic_retry_s: float = 300.0
    outbox_max: int = 100_000
    backfill: bool = True
    backfill_delay_s: float = 1.0
    backfill_timeout_s: float = 15.0
    backfill_concurrency: int = 4
    max_frame_bytes: int = 16 * 1024 * 1024


class Resume(NamedTuple):
    """What an earlier run of the feed published last on an instrument's trades stream."""

    trade_ids: frozenset[str]  # the ids of its newest trades
    ts_event: int  # the newest trade's time
    seq: int


class DeadLetter(NamedTuple):
    """A frame the parser refused, on its way to a dead-letter stream."""

    origin: str
    origin_id: str
    reason: str
    raw: bytes


OutItem = Published | DeadLetter


class Outbox:
    """The queue between a socket reader and its publisher; ``limit`` is soft (see module doc)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: deque[OutItem] = deque()
        self._nonempty = asyncio.Event()
        self._low = asyncio.Event()
        self._low.set()
        self.peak = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def over(self) -> bool:
        return len(self._items) >= self.limit

    def put(self, items: Iterable[OutItem]) -> None:
        self._items.extend(items)
        n = len(self._items)
        if n:
            self._nonempty.set()
            self.peak = max(self.peak, n)
            if n > self.limit // 2:
                self._low.clear()

    def take(self, n: int) -> list[OutItem]:
        items = self._items
        out = [items.popleft() for _ in range(min(n, len(items)))]
        if not items:
            self._nonempty.clear()
        if len(items) <= self.limit // 2:
            self._low.set()
        return out

    async def wait(self) -> None:
        await self._nonempty.wait()

    async def wait_low(self) -> None:
        """Until at most half the limit is queued."""
        await self._low.wait()


TopicState = Literal["pending", "active", "failed"]


@dataclass
class _Topic:
    name: str
    kind: Literal["trades", "book"]
    symbol: str  # registry symbol
    state: TopicState = "pending"
    since: float = 0.0  # monotonic: subscribe sent, or last frame
    last_frame: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    resub_at: float = 0.0
    resub_pending: bool = False


@dataclass
class _Request:
    op: str
    topics: list[str]
    sent: float


@dataclass
class _Session:
    ws: ClientConnection
    sends: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    close_reason: str = ""
    connected_at: float = 0.0


def _reason_label(reason: str) -> str:
    if reason.startswith("u jumped"):
        return "gap"
    if "cross" in reason:
        return "crossed"
    if "before snapshot" in reason:
        return "no_snapshot"
    if reason.startswith("silent"):
        return "silent"
    return "other"


class BybitClient:
    """Keeps one category's connection alive and its topics flowing until ``stop`` is set.

    ``outbox`` None means record-only: frames are recorded and parsed (for acks, pongs and book
    resyncs), messages are discarded and no REST backfill runs.
    """

    def __init__(
        self,
        *,
        url: str,
        category: str,
        parser: BybitParser,
        instruments: Sequence[Instrument],
        clock: Clock,
        options: ClientOptions | None = None,
        outbox: Outbox | None = None,
        rest: BybitRest | None = None,
        recorder: RecordingWriter | None = None,
        resume: dict[str, Resume] | None = None,
    ) -> None:
        self.url = url
        self.category = category
        self.parser = parser
        self.clock = clock
        self.opts = options or ClientOptions()
        self.outbox = outbox
        self.rest = rest if outbox is not None else None
        self.recorder = recorder
        # a restarted feed backfills on its first connection too, skipping what is already out
        self._resume = dict(resume or {})
        self.venue_symbols: dict[str, str] = {}  # registry symbol -> venue symbol
        for inst in instruments:
            if inst.bybit is not None and inst.bybit.category == category:
                self.venue_symbols[inst.symbol] = inst.bybit.symbol
        venue_to_symbol = {v: k for k, v in self.venue_symbols.items()}
        self.topics: dict[str, _Topic] = {}
        for name in parser.topics:
            venue_symbol = name.rsplit(".", 1)[1]
            trade = name.startswith("publicTrade.")
            kind: Literal["trades", "book"] = "trades" if trade else "book"
            symbol = venue_to_symbol.get(venue_symbol, venue_symbol)
            self.topics[name] = _Topic(name, kind, symbol)
        self._book_topic = {t.symbol: t for t in self.topics.values() if t.kind == "book"}
        self.state = "idle"
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "frames",
                "connects",
                "connect_failures",
                "reconnects",
                "malformed",
                "gaps",
                "resubscribes",
                "resubscribes_coalesced",
                "subscribe_failures",
                "ack_timeouts",
                "unknown_topic",
                "pongs",
                "overflows",
                "backfilled",
                "backfill_failures",
            ),
            0,
        )
        self.reconnect_reasons: dict[str, int] = {}
        self.last_close = ""
        self.last_frame_mono = 0.0
        self.venue_clock = VenueClock()  # newest exchange time per stream, for the heartbeats
        self._spec_frame: bytes | None = None  # the venue's instrument facts, sent on connect
        self.connected_since_ns = 0
        self._session: _Session | None = None
        self._requests: dict[str, _Request] = {}
        self._req_ids = itertools.count(1)
        self._held: dict[str, list[OutItem]] = {}
        self._backfill_task: asyncio.Task[None] | None = None
        self._last_bad_log = 0.0
        self._bad_unlogged = 0

    # --- public ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def holding(self, symbol: str) -> bool:
        """True while live trades of ``symbol`` wait for its REST backfill to go out first."""
        return symbol in self._held

    def instruments_info(self, infos: Sequence[InstrumentInfo]) -> None:
        """The venue's instruments-info rows: published as ``InstrumentSpec`` on the trades
        streams now and at every new connection, through the parser like any frame so that a
        recording replays them."""
        wanted = set(self.venue_symbols.values())
        mine = [i for i in infos if i.symbol in wanted]
        self._spec_frame = spec_frame(self.category, mine, self.clock.now_ns() // 1_000_000)
        self._on_frame(self.clock.now_ns(), self._spec_frame)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and reconnect with jittered exponential backoff, until ``stop``."""
        delay = self.opts.backoff_initial_s
        first = True
        while not stop.is_set():
            self.state = "connecting"
            try:
                ws = await self._connect(stop)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as err:
                self.counters["connect_failures"] += 1
                CONNECT_FAILURES.labels(self.category).inc()
                log.warning("bybit %s: connect failed: %s", self.category, err)
                self.state = "backoff"
                await self._sleep(stop, self._jitter(delay))
                delay = min(delay * self.opts.backoff_factor, self.opts.backoff_max_s)
                continue
            if ws is None:
                break
            session = _Session(ws, connected_at=self.clock.monotonic())
            reason = await self._run_session(session, stop, first)
            first = False
            await self._after_session(reason)
            if stop.is_set():
                break
            if self.clock.monotonic() - session.connected_at >= self.opts.stable_after_s:
                delay = self.opts.backoff_initial_s
            if reason == "overflow" and self.outbox is not None:
                self.state = "draining"
                await _until_either(self.outbox.wait_low(), stop)
            self.state = "backoff"
            await self._sleep(stop, self._jitter(delay))
            delay = min(delay * self.opts.backoff_factor, self.opts.backoff_max_s)
        self.state = "stopped"
        CONNECTED.labels(self.category).set(0)

    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        silent = {
            t.name: round(now - max(t.last_frame, t.since), 1)
            for t in self.topics.values()
            if t.state != "failed" and self._silence_limit(t) and self._silent_for(t, now)
        }
        return {
            "state": self.state,
            "connected_since_ns": self.connected_since_ns,
            "last_frame_age_s": round(now - self.last_frame_mono, 3)
            if self.last_frame_mono
            else None,
            "last_close": self.last_close,
            "counters": dict(self.counters),
            "reconnect_reasons": dict(self.reconnect_reasons),
            "failed_topics": sorted(t.name for t in self.topics.values() if t.state == "failed"),
            "silent_topics": silent,
            "topics": len(self.topics),
            "outbox": len(self.outbox) if self.outbox is not None else 0,
            "outbox_peak": self.outbox.peak if self.outbox is not None else 0,
            "parser": dict(self.parser.counters),
        }

    # --- one connection ----------------------------------------------------------------------

    async def _connect(self, stop: asyncio.Event) -> ClientConnection | None:
        """Open the category's socket; None if ``stop`` came first."""

        async def open_() -> ClientConnection:
            return await connect(
                f"{self.url.rstrip('/')}/{self.category}",
                open_timeout=self.opts.open_timeout_s,
                ping_interval=None,  # our JSON ping is the heartbeat Bybit asks for
                close_timeout=2,
                max_size=self.opts.max_frame_bytes,
                proxy=None,
            )

        opening = asyncio.create_task(open_())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            return None
        return opening.result()

    async def _run_session(self, session: _Session, stop: asyncio.Event, first: bool) -> str:
        self._session = session
        self.state = "connected"
        self.counters["connects"] += 1
        self.connected_since_ns = self.clock.now_ns()
        self.last_frame_mono = session.connected_at
        CONNECTED.labels(self.category).set(1)
        log.info("bybit %s: connected to %s", self.category, self.url)
        self._requests.clear()
        for t in self.topics.values():
            if t.state == "active":
                t.state = "pending"
            t.resub_pending = False
        if (not first or self._resume) and self.rest is not None and self.opts.backfill:
            # live trades wait until the REST backfill went out, so a stream stays in time order
            self._held = {s: [] for s in self.venue_symbols}
            self._backfill_task = asyncio.create_task(self._backfill(), name="bybit-backfill")
        if self._spec_frame is not None:  # ahead of the subscriptions, so before any trade
            self._on_frame(self.clock.now_ns(), self._spec_frame)
        self._subscribe_all()
        tasks = [
            asyncio.create_task(self._reader(session), name="bybit-reader"),
            asyncio.create_task(self._sender(session), name="bybit-sender"),
            asyncio.create_task(self._pinger(session), name="bybit-pinger"),
            asyncio.create_task(self._watchdog(session), name="bybit-watchdog"),
            asyncio.create_task(stop.wait(), name="bybit-stop"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        reason = session.close_reason
        if not reason:
            reason = "stop" if stop.is_set() else "closed"
            for task, result in zip(tasks, results, strict=True):
                failed = isinstance(result, Exception) and not isinstance(result, ConnectionClosed)
                if task in done and failed:
                    reason = "error"
                    log.error(
                        "bybit %s: %s failed", self.category, task.get_name(), exc_info=result
                    )
        ws = session.ws
        peer = f"code {ws.close_code}, {ws.close_reason or 'no reason'}" if ws.close_code else ""
        with contextlib.suppress(Exception):
            if reason == "stop":
                await ws.close(1000, "client stopping")
            else:
                # a dead peer, or one whose frames we stopped reading, would hold a polite
                # close handshake for seconds
                ws.transport.abort()
        self.last_close = f"{reason} ({peer or f'closed by us, code {ws.close_code}'})"
        return reason

    async def _after_session(self, reason: str) -> None:
        self._session = None
        CONNECTED.labels(self.category).set(0)
        if self._backfill_task is not None:
            self._backfill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._backfill_task
            self._backfill_task = None
        self._release_held()
        if reason != "stop":
            self.counters["reconnects"] += 1
            self.reconnect_reasons[reason] = self.reconnect_reasons.get(reason, 0) + 1
            RECONNECTS.labels(self.category, reason).inc()
            log.warning("bybit %s: connection ended: %s", self.category, self.last_close)
        self._emit(self.parser.disconnected(self.clock.now_ns()), force=True)

    async def _reader(self, session: _Session) -> None:
        ws = session.ws
        while not session.close_reason:
            frame = await ws.recv(decode=False)
            recv_ns = self.clock.now_ns()
            self._on_frame(recv_ns, frame if isinstance(frame, bytes) else frame.encode())

    async def _sender(self, session: _Session) -> None:
        while True:
            text = await session.sends.get()
            await session.ws.send(text)

    async def _pinger(self, session: _Session) -> None:
        n = itertools.count(1)
        while True:
            await asyncio.sleep(self.opts.ping_interval_s)
            self._send(session, {"req_id": f"ping-{next(n)}", "op": "ping"})

    async def _watchdog(self, session: _Session) -> None:
        limits = [self.opts.conn_silence_s, self.opts.book_silence_s, self.opts.ack_timeout_s]
        tick = max(0.05, min(1.0, min(x for x in limits if x > 0) / 5))
        while not session.close_reason:
            await asyncio.sleep(tick)
            now = self.clock.monotonic()
            if self.opts.conn_silence_s and now - self.last_frame_mono > self.opts.conn_silence_s:
                log.warning(
                    "bybit %s: no frame for %.1f s; reconnecting",
                    self.category,
                    now - self.last_frame_mono,
                )
                session.close_reason = "silent"
                return
            self._check_topics(session, now)
            self._check_requests(now)

    def _check_topics(self, session: _Session, now: float) -> None:
        retry: list[str] = []
        for t in self.topics.values():
            if t.state == "failed":
                if now >= t.retry_at:
                    retry.append(t.name)
                continue
            TOPIC_SILENCE.labels(self.category, t.name).set(now - max(t.last_frame, t.since))
            if t.kind == "book" and self._silent_for(t, now):
                self._resubscribe(session, t, "silent: no book frame for "
                                  f"{now - max(t.last_frame, t.since):.0f} s")  # fmt: skip
        for name in retry:
            self.topics[name].state = "pending"
            self.topics[name].since = now
            log.info("bybit %s: retrying failed topic %s", self.category, name)
            self._request(session, "subscribe", [name])

    def _silence_limit(self, t: _Topic) -> float:
        return self.opts.book_silence_s if t.kind == "book" else self.opts.trade_silence_s

    def _silent_for(self, t: _Topic, now: float) -> bool:
        limit = self._silence_limit(t)
        return bool(limit) and now - max(t.last_frame, t.since) > limit

    def _check_requests(self, now: float) -> None:
        for req_id, req in list(self._requests.items()):
            if now - req.sent > self.opts.ack_timeout_s:
                del self._requests[req_id]
                self.counters["ack_timeouts"] += 1
                # not resent: data on the topic proves the subscription, and a silent book topic
                # is resubscribed by the silence watchdog anyway
                log.warning(
                    "bybit %s: no ack for %s %s within %.0f s",
                    self.category,
                    req.op,
                    ",".join(req.topics),
                    self.opts.ack_timeout_s,
                )

    # --- frames ------------------------------------------------------------------------------

    def _on_frame(self, recv_ns: int, frame: bytes) -> None:
        now = self.clock.monotonic()
        self.last_frame_mono = now
        self.counters["frames"] += 1
        FRAMES.labels(self.category).inc()
        if self.recorder is not None:
            self.recorder.write(recv_ns, frame)
        m = _TOPIC.search(frame, 0, _HOT_PREFIX)
        if m is not None:
            t = self.topics.get(m[1].decode("utf-8", "replace"))
            if t is not None:
                t.last_frame = now
                if t.state == "pending":
                    t.state = "active"  # data proves the subscription even without an ack
        try:
            out = self.parser.parse(recv_ns, frame)
        except BadFrame as err:
            self._bad_frame(recv_ns, frame, str(err))
        except Exception as err:  # a parser bug must cost one frame, not the feed
            log.exception("bybit %s: parser failed on a frame", self.category)
            self._bad_frame(recv_ns, frame, f"parser error: {type(err).__name__}: {err}")
        else:
            if out:
                self._emit(out)
        if self.parser.events:
            self._handle_events()

    def _emit(self, out: list[Published], *, force: bool = False) -> None:
        """Route parsed messages to the outbox (or hold trades during a backfill)."""
        ready: list[OutItem] = []
        for p in out:
            msg = p.msg
            if isinstance(msg, Gap):
                self.counters["gaps"] += 1
                GAPS.labels(self.category, msg.stream).inc()
            elif isinstance(msg, Trade | BookDelta | BookSnapshot):
                self.venue_clock.observe(p.kind, msg.ts_event, msg.ts_recv)
                if isinstance(msg, BookSnapshot):
                    bt = self._book_topic.get(p.symbol)
                    if bt is not None:
                        bt.resub_pending = False
            held = self._held.get(p.symbol) if p.kind == "trades" else None
            if held is not None and not force:
                held.append(p)
            else:
                ready.append(p)
        self._put(ready)

    def _put(self, items: list[OutItem]) -> None:
        if self.outbox is None or not items:
            return
        self.outbox.put(items)
        OUTBOX.labels(self.category).set(len(self.outbox))
        session = self._session
        if self.outbox.over and session is not None and not session.close_reason:
            self.counters["overflows"] += 1
            OVERFLOWS.labels(self.category).inc()
            log.error(
                "bybit %s: publisher behind (%d messages queued); closing the connection until"
                " it catches up, gaps will be marked and trades backfilled",
                self.category,
                len(self.outbox),
            )
            session.close_reason = "overflow"

    def _bad_frame(self, recv_ns: int, frame: bytes, why: str) -> None:
        self.counters["malformed"] += 1
        MALFORMED.labels(self.category).inc()
        origin = f"bybit:{self.category}"
        m = _TOPIC.search(frame)
        if m is not None:
            t = self.topics.get(m[1].decode("utf-8", "replace"))
            if t is not None:
                origin = keys.stream(t.symbol, t.kind)
        now = self.clock.monotonic()
        if now - self._last_bad_log >= _LOG_EVERY_S:
            more = f" (+{self._bad_unlogged} more since)" if self._bad_unlogged else ""
            log.warning("bybit %s: malformed frame: %s%s", self.category, why, more)
            self._last_bad_log = now
            self._bad_unlogged = 0
        else:
            self._bad_unlogged += 1
        self._put([DeadLetter(origin, f"ws:{self.category}:{recv_ns}", f"malformed: {why}", frame)])

    def _handle_events(self) -> None:
        events = list(self.parser.events)
        self.parser.events.clear()
        session = self._session
        for ev in events:
            if isinstance(ev, Pong):
                self.counters["pongs"] += 1
            elif isinstance(ev, SubscribeResult):
                self._on_ack(session, ev)
            elif isinstance(ev, Resubscribe):
                t = self.topics.get(ev.topic)
                if t is not None and session is not None:
                    self._resubscribe(session, t, ev.reason)
            elif isinstance(ev, UnknownTopic):
                self.counters["unknown_topic"] += 1
                UNKNOWN_TOPICS.labels(self.category).inc()
                log.warning("bybit %s: frame of unknown topic %s", self.category, ev.topic)

    # --- subscriptions -----------------------------------------------------------------------

    def _send(self, session: _Session, payload: dict[str, Any]) -> None:
        session.sends.put_nowait(json.dumps(payload, separators=(",", ":")))

    def _request(self, session: _Session, op: str, topics: list[str]) -> None:
        req_id = f"{self.category}-{next(self._req_ids)}"
        self._requests[req_id] = _Request(op, topics, self.clock.monotonic())
        self._send(session, {"req_id": req_id, "op": op, "args": topics})

    def _subscribe_all(self) -> None:
        session = self._session
        assert session is not None
        now = self.clock.monotonic()
        names = []
        for t in self.topics.values():
            if t.state == "failed" and now < t.retry_at:
                continue  # a refused topic waits for its retry time, reconnect or not
            t.state, t.since = "pending", now
            names.append(t.name)
        for batch in _batches(names, self.opts.subscribe_batch):
            self._request(session, "subscribe", batch)

    def _resubscribe(self, session: _Session, t: _Topic, reason: str) -> None:
        now = self.clock.monotonic()
        if t.state == "failed":
            return
        if t.resub_pending and now - t.resub_at < self.opts.ack_timeout_s:
            # one resubscribe in flight brings the snapshot; more would only churn
            self.counters["resubscribes_coalesced"] += 1
            return
        self.counters["resubscribes"] += 1
        RESUBSCRIBES.labels(self.category, _reason_label(reason)).inc()
        log.warning("bybit %s: resubscribing %s: %s", self.category, t.name, reason)
        t.resub_pending, t.resub_at, t.since = True, now, now
        self._request(session, "unsubscribe", [t.name])
        self._request(session, "subscribe", [t.name])

    def _on_ack(self, session: _Session | None, ev: SubscribeResult) -> None:
        req = self._requests.pop(ev.req_id, None)
        if req is None:
            # an ack without our req_id: Bybit answers in order, so it is the oldest of its op
            for req_id, r in self._requests.items():
                if r.op == ev.op or not ev.op:
                    req = self._requests.pop(req_id)
                    break
        if req is None:
            log.info("bybit %s: ack for no pending request: %s", self.category, ev)
            return
        if req.op != "subscribe":
            return
        if ev.success or _ALREADY in ev.ret_msg:
            for name in req.topics:
                t = self.topics.get(name)
                if t is not None and t.state == "pending":
                    t.state = "active"
            return
        self._ack_failed(session, req, ev.ret_msg)

    def _ack_failed(self, session: _Session | None, req: _Request, ret_msg: str) -> None:
        self.counters["subscribe_failures"] += 1
        SUBSCRIBE_FAILURES.labels(self.category).inc()
        if len(req.topics) > 1 and session is not None:
            # one bad topic fails the whole request: ask for each alone to find it
            log.warning(
                "bybit %s: subscribe of %d topics refused (%s); retrying them one by one",
                self.category,
                len(req.topics),
                ret_msg,
            )
            for name in req.topics:
                self._request(session, "subscribe", [name])
            return
        now = self.clock.monotonic()
        for name in req.topics:
            t = self.topics.get(name)
            if t is None:
                continue
            t.state = "failed"
            t.failures += 1
            wait = min(self.opts.failed_topic_retry_s * 2 ** (t.failures - 1), 6 * 3600.0)
            t.retry_at = now + wait
            log.error(
                "bybit %s: topic %s refused (%s); next try in %.0f s",
                self.category,
                name,
                ret_msg,
                wait,
            )

    # --- backfill ----------------------------------------------------------------------------

    async def _backfill(self) -> None:
        await asyncio.sleep(self.opts.backfill_delay_s)
        gate = asyncio.Semaphore(max(1, self.opts.backfill_concurrency))

        async def one(symbol: str, venue_symbol: str) -> None:
            async with gate:
                await self._backfill_symbol(symbol, venue_symbol)

        await asyncio.gather(*(one(s, v) for s, v in self.venue_symbols.items()))

    async def _backfill_symbol(self, symbol: str, venue_symbol: str) -> None:
        assert self.rest is not None
        out: list[Published] = []
        rows: list[dict[str, Any]] = []
        resume = self._resume.pop(symbol, None)
        try:
            async with asyncio.timeout(self.opts.backfill_timeout_s):
                rows = await self.rest.recent_trades(self.category, venue_symbol)
            fresh = rows
            if resume is not None:
                fresh = [r for r in rows if str(r.get("execId")) not in resume.trade_ids]
                if resume.trade_ids and len(fresh) == len(rows):
                    out.append(self._restart_gap(symbol, resume, "did not reach"))
            out += self.parser.backfill(self.clock.now_ns(), symbol, fresh)
        except (RestError, TimeoutError) as err:
            self._backfill_failed(symbol, f"{type(err).__name__}: {err}")
            if resume is not None and resume.trade_ids:
                out.append(self._restart_gap(symbol, resume, "failed to reach"))
        except BadFrame as err:
            self._backfill_failed(symbol, str(err))
            origin = keys.stream(symbol, "trades")
            raw = json.dumps(rows, separators=(",", ":")).encode()
            self._put([DeadLetter(origin, "rest:recent-trade", f"malformed: {err}", raw)])
        n = sum(1 for p in out if isinstance(p.msg, Trade))
        self.counters["backfilled"] += n
        BACKFILLED.labels(self.category).inc(n)
        held = self._held.pop(symbol, [])
        self._emit(out, force=True)
        self._put(held)
        if n:
            log.info("bybit %s: backfilled %d trades of %s", self.category, n, symbol)

    def _restart_gap(self, symbol: str, resume: Resume, what: str) -> Published:
        # after a restart no disconnect marked the stretch; without this the loss would be silent
        reason = f"feed restarted: backfill {what} the last published trade"
        gap = Gap(resume.ts_event, self.clock.now_ns(), "trades", reason, last_seq=resume.seq)
        return Published(symbol, "trades", gap)

    def _backfill_failed(self, symbol: str, why: str) -> None:
        # the disconnect's Gap marker stays the last word on this stretch of the tape
        self.counters["backfill_failures"] += 1
        BACKFILL_FAILURES.labels(self.category).inc()
        log.warning("bybit %s: backfill of %s failed: %s", self.category, symbol, why)

    def _release_held(self) -> None:
        held, self._held = self._held, {}
        for items in held.values():
            self._put(items)

    # --- helpers -----------------------------------------------------------------------------

    def _jitter(self, delay: float) -> float:
        j = self.opts.backoff_jitter
        return delay * random.uniform(1 - j, 1 + j)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def _until_either(aw: Any, stop: asyncio.Event) -> None:
    first = asyncio.ensure_future(aw)
    second = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([first, second], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (first, second):
            f.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await f


def _batches(names: Sequence[str], size: int, max_chars: int = 20_000) -> list[list[str]]:
    """Subscribe args in requests of at most ``size`` topics and ``max_chars`` characters."""
    out: list[list[str]] = []
    cur: list[str] = []
    chars = 0
    for name in names:
        if cur and (len(cur) >= size or chars + len(name) > max_chars):
            out.append(cur)
            cur, chars = [], 0
        cur.append(name)
        chars += len(name)
    if cur:
        out.append(cur)
    return out
