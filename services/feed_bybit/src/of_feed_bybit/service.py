"""The Bybit v5 feed service: settings, and the wiring of REST, connections, publisher and health.
Trades and books of the registry's Bybit instruments go to ``of:{SYM}:trades`` / ``of:{SYM}:book``.

Heartbeats: every ``OF_BYBIT_HEARTBEAT_S`` each instrument gets a ``Heartbeat`` on both streams
while its connection is up. Its ``ts_event`` is the newest exchange timestamp seen on that
connection (any instrument) advanced by the wall time elapsed since that frame arrived: venue
time keeps moving through a quiet market. On the trades streams only trades count: a book frame,
stamped after the trades it shows, must not move a trades heartbeat past a trade still in flight
(``venueclock.py``). It never goes below the last ``ts_event`` published on the stream, so event
time on a stream never runs backwards. No heartbeats while disconnected: the ``Gap`` marker says
data may be missing, and a guessed clock must not close bars over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, ClassVar, Final, Literal

import msgspec
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from of_feed_bybit.client import BybitClient, ClientOptions, DeadLetter, Outbox, Resume
from of_feed_bybit.parser import BybitParser
from of_feed_bybit.rest import BybitRest, RestError, check_instruments, describe_infos
from ofcommon import codec, keys
from ofcommon.bus import DeadLetters, Producer, Redis
from ofcommon.clock import Clock
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import BookDelta, BookSnapshot, Heartbeat, Trade
from ofcommon.recording import RecordingWriter
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import BaseSettings, PositiveFloat
from ofcommon.sourceclaim import ClaimedProducer, SourceClaims

log = logging.getLogger(__name__)

NAME = "feed_bybit"
VENUE: Final = "bybit"
CATEGORIES: tuple[Literal["linear", "spot"], ...] = ("linear", "spot")

PARSER_EVENTS = Counter(
    "of_bybit_parser_events_total",
    "The parser's own counters (resets, crossed, duplicates, ignored_deltas, ...)",
    ["category", "counter"],
)
MISMATCHES = Gauge(
    "of_bybit_instrument_mismatches",
    "Registry instruments whose Bybit facts disagree with the registry (instruments-info)",
    ["category", "problem"],
)

NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
_RESUME_SCAN: Final = 2000  # newest trades-stream entries read at start (>= any REST page)
_FIRST_CHECK_S: Final = 5.0  # how long the connections wait for the first instruments-info


class BybitSettings(BaseSettings, kw_only=True, frozen=True):
    bybit_ws_url: str = "wss://stream.bybit.com/v5/public"
    bybit_rest_url: str = "https://api.bybit.com"
    bybit_depth: Literal[1, 50, 200, 1000] = 50
    bybit_ping_interval_s: PositiveFloat = 20.0
    bybit_conn_silence_s: PositiveFloat = 45.0
    bybit_book_silence_s: NonNegativeFloat = 60.0
    bybit_trade_silence_s: NonNegativeFloat = 900.0
    bybit_backoff_initial_s: PositiveFloat = 0.5
    bybit_backoff_factor: Annotated[float, msgspec.Meta(ge=1)] = 1.5
    bybit_backoff_max_s: PositiveFloat = 5.0
    bybit_backoff_jitter: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.25
    bybit_stable_s: PositiveFloat = 60.0
    bybit_ack_timeout_s: PositiveFloat = 10.0
    bybit_subscribe_batch: Annotated[int, msgspec.Meta(ge=1, le=10)] = 10
    bybit_failed_topic_retry_s: PositiveFloat = 300.0
    bybit_outbox_max: Annotated[int, msgspec.Meta(ge=10)] = 100_000
    bybit_flush_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 5.0
    bybit_flush_max: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2000
    bybit_heartbeat_s: PositiveFloat = 1.0
    bybit_backfill: bool = True
    bybit_backfill_delay_s: NonNegativeFloat = 1.0
    bybit_backfill_timeout_s: PositiveFloat = 15.0
    bybit_rest_timeout_s: PositiveFloat = 10.0
    bybit_rest_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    bybit_rate_limit_cooldown_s: NonNegativeFloat = 600.0
    bybit_instruments_refresh_s: PositiveFloat = 3600.0
    record_dir: str = ""
    record_rotate_mb: Annotated[int, msgspec.Meta(ge=1)] = 256
    record_rotate_s: PositiveFloat = 3600.0

    docs: ClassVar = {
        **BaseSettings.docs,
        "bybit_ws_url": "public WebSocket base URL; /linear and /spot are appended",
        "bybit_rest_url": "REST base URL (instruments-info, recent-trade backfill)",
        "bybit_depth": "order book depth topic: 1, 50, 200 or 1000",
        "bybit_ping_interval_s": "seconds between JSON pings (Bybit asks for about 20)",
        "bybit_conn_silence_s": "reconnect after this long without any frame (pongs included)",
        "bybit_book_silence_s": "resubscribe a book topic silent this long; 0 = never",
        "bybit_trade_silence_s": "report a trade topic silent this long (no action: quiet"
        " markets have no trades); 0 = never",
        "bybit_backoff_initial_s": "first reconnect delay",
        "bybit_backoff_factor": "reconnect delay multiplier per failed attempt",
        "bybit_backoff_max_s": "largest reconnect delay",
        "bybit_backoff_jitter": "random ± fraction applied to every reconnect delay",
        "bybit_stable_s": "a connection up this long resets the reconnect delay",
        "bybit_ack_timeout_s": "seconds to wait for a subscribe acknowledgement",
        "bybit_subscribe_batch": "topics per subscribe request (Bybit spot allows 10)",
        "bybit_failed_topic_retry_s": "first retry delay of a refused topic (doubles each time)",
        "bybit_outbox_max": "parsed messages queued for Redis before the connection is closed"
        " until the publisher catches up (gaps marked, trades backfilled)",
        "bybit_flush_ms": "milliseconds a publish batch waits for more messages",
        "bybit_flush_max": "messages per publish batch at most",
        "bybit_heartbeat_s": "seconds between heartbeats per instrument",
        "bybit_backfill": "backfill trades from REST recent-trade after a reconnect",
        "bybit_backfill_delay_s": "seconds after a reconnect before the backfill request",
        "bybit_backfill_timeout_s": "seconds a backfill may hold an instrument's live trades",
        "bybit_rest_timeout_s": "timeout of one REST request",
        "bybit_rest_retries": "retries of a failed REST request (with backoff)",
        "bybit_rate_limit_cooldown_s": "REST pause after Bybit's 403 rate limit",
        "bybit_instruments_refresh_s": "seconds between instruments-info checks",
        "record_dir": "also record raw frames here (gzip, rotated); empty = off",
        "record_rotate_mb": "start a new recording file past this many MB",
        "record_rotate_s": "start a new recording file after this many seconds",
    }

    def client_options(self) -> ClientOptions:
        return ClientOptions(
            ping_interval_s=self.bybit_ping_interval_s,
            conn_silence_s=self.bybit_conn_silence_s,
            book_silence_s=self.bybit_book_silence_s,
            trade_silence_s=self.bybit_trade_silence_s,
            backoff_initial_s=self.bybit_backoff_initial_s,
            backoff_factor=self.bybit_backoff_factor,
            backoff_max_s=self.bybit_backoff_max_s,
            backoff_jitter=self.bybit_backoff_jitter,
            stable_after_s=self.bybit_stable_s,
            ack_timeout_s=self.bybit_ack_timeout_s,
            subscribe_batch=self.bybit_subscribe_batch,
            failed_topic_retry_s=self.bybit_failed_topic_retry_s,
            outbox_max=self.bybit_outbox_max,
            backfill=self.bybit_backfill,
            backfill_delay_s=self.bybit_backfill_delay_s,
            backfill_timeout_s=self.bybit_backfill_timeout_s,
        )

    def rest_client(self, clock: Clock | None = None) -> BybitRest:
        return BybitRest(
            self.bybit_rest_url,
            timeout_s=self.bybit_rest_timeout_s,
            retries=self.bybit_rest_retries,
            rate_limit_cooldown_s=self.bybit_rate_limit_cooldown_s,
            clock=clock,
        )

    def recorder(self, out_dir: str | Path, category: str) -> RecordingWriter:
        return RecordingWriter(
            Path(out_dir),
            "bybit",
            category,
            rotate_bytes=self.record_rotate_mb * 1024 * 1024,
            rotate_s=self.record_rotate_s,
        )


def bybit_instruments(registry: Registry, spec: str) -> dict[str, list[Instrument]]:
    """The selected instruments this feed publishes (Bybit is their source), by category."""
    out: dict[str, list[Instrument]] = {}
    elsewhere = []
    for inst in registry.select(spec):
        if inst.bybit is None:
            continue
        if inst.feed_venue != VENUE:
            elsewhere.append(f"{inst.symbol} ({inst.feed_venue})")
            continue
        out.setdefault(inst.bybit.category, []).append(inst)
    if elsewhere:
        log.info("not published by this feed, their source is another venue: %s", elsewhere)
    return out


async def keep_claimed(
    claims: SourceClaims, by_category: dict[str, list[Instrument]]
) -> dict[str, list[Instrument]]:
    """Only the instruments whose source claim this feed holds (the refusals are logged)."""
    await claims.acquire(i.symbol for insts in by_category.values() for i in insts)
    kept = {c: [i for i in insts if claims.holds(i.symbol)] for c, insts in by_category.items()}
    return {c: insts for c, insts in kept.items() if insts}


class Publisher:
    """Drains one connection's outbox into Redis in batches and adds the heartbeats."""

    def __init__(
        self,
        ctx: ServiceContext[BybitSettings],
        client: BybitClient,
        outbox: Outbox,
        symbols: Sequence[str],
        claims: SourceClaims | None = None,
    ) -> None:
        self._ctx = ctx
        self._client = client
        self._outbox = outbox
        self._symbols = list(symbols)
        self._producer = (
            Producer(ctx.redis, service=NAME)
            if claims is None
            else ClaimedProducer(ctx.redis, claims, service=NAME)
        )
        self._dead = DeadLetters(ctx.redis, NAME)
        self._last_ts: dict[tuple[str, str], int] = {}
        self._source = f"bybit:{client.category}"
        self.published = 0
        self.flush_errors = 0
        self.parser_seen: dict[str, int] = {}  # parser counters already exported

    async def run(self, done: asyncio.Event) -> None:
        """Publish until ``done`` is set and the outbox is empty."""
        s = self._ctx.settings
        clock = self._ctx.clock
        next_hb = clock.monotonic() + s.bybit_heartbeat_s
        while True:
            if not len(self._outbox):
                if done.is_set():
                    return
                wait = max(0.0, min(next_hb - clock.monotonic(), 0.25))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox.wait(), wait)
                if s.bybit_flush_ms and len(self._outbox) < s.bybit_flush_max:
                    await asyncio.sleep(s.bybit_flush_ms / 1000)  # linger: fuller batches
            dead: list[DeadLetter] = []
            for item in self._outbox.take(s.bybit_flush_max):
                if isinstance(item, DeadLetter):
                    dead.append(item)
                    continue
                msg = item.msg
                if isinstance(msg, Trade | BookSnapshot | BookDelta):
                    # gap markers may carry our receive time; only venue time floors heartbeats
                    key = (item.symbol, item.kind)
                    if msg.ts_event > self._last_ts.get(key, 0):
                        self._last_ts[key] = msg.ts_event
                self._producer.add(keys.stream(item.symbol, item.kind), item.msg)
            # a heartbeat vouches for everything before it: never with parsed messages still queued
            if clock.monotonic() >= next_hb and not len(self._outbox):
                next_hb = clock.monotonic() + s.bybit_heartbeat_s
                self._heartbeats()
            await self._flush(done)
            for d in dead:
                await self._dead_letter(d)

    def _heartbeats(self) -> None:
        c = self._client
        if not c.connected:
            return
        now = self._ctx.clock.now_ns()
        for symbol in self._symbols:
            for kind in ("trades", "book"):
                venue_now = c.venue_clock.now(kind, now)
                if venue_now is None:
                    continue  # nothing of this kind on the connection yet: no venue time
                if kind == "trades" and c.holding(symbol):
                    continue  # live trades wait behind a backfill; they are older than now
                ts = max(venue_now, self._last_ts.get((symbol, kind), 0))
                self._last_ts[(symbol, kind)] = ts
                self._producer.add(keys.stream(symbol, kind), Heartbeat(ts, now, self._source))

    async def _flush(self, done: asyncio.Event) -> None:
        delay = 0.1
        while len(self._producer):
            try:
                result = await self._producer.flush()
                self.published += result.added
                return
            except Exception as err:  # Redis away: keep the batch, the outbox limit protects us
                self.flush_errors += 1
                log.warning("bybit publish failed (%s); retrying in %.1f s", err, delay)
                if done.is_set() and self._ctx.stop.is_set() and delay >= 5.0:
                    log.error("bybit publisher giving up on %d messages", len(self._producer))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _dead_letter(self, d: DeadLetter) -> None:
        try:
            await self._dead.send(d.origin, d.origin_id, d.reason, d.raw)
        except Exception as err:
            log.error("bybit dead letter lost (%s): %s", err, d.reason)


async def published_tail(redis: Redis, symbols: Sequence[str]) -> dict[str, Resume]:
    """The newest trades an earlier run published per instrument, so a restart can backfill the
    trades it missed without repeating the ones already out."""
    out: dict[str, Resume] = {}
    for symbol in symbols:
        try:
            entries = await redis.xrevrange(keys.stream(symbol, "trades"), count=_RESUME_SCAN)
        except Exception as err:  # no history to resume from is not a reason not to start
            log.warning("bybit: cannot read %s for the restart backfill: %s", symbol, err)
            continue
        ids: set[str] = set()
        newest: Trade | None = None
        for _, fields in entries or ():
            raw = fields.get(codec.FIELD) if fields else None
            if not isinstance(raw, bytes):
                continue
            try:
                msg = codec.decode(raw)
            except codec.DecodeError:
                continue
            if isinstance(msg, Trade):
                ids.add(msg.trade_id)
                if newest is None or msg.ts_event > newest.ts_event:
                    newest = msg
        if newest is not None:
            out[symbol] = Resume(frozenset(ids), newest.ts_event, newest.seq)
    return out


async def _instrument_check(
    ctx: ServiceContext[BybitSettings],
    rest: BybitRest,
    by_category: dict[str, list[Instrument]],
    clients: Sequence[BybitClient] = (),
    first: asyncio.Event | None = None,
) -> None:
    """instruments-info at start and every refresh interval; mismatches go to log and health,
    the venue's facts to the clients (``InstrumentSpec``); ``first`` is set after the first pass."""
    status: dict[str, object] = {}
    ctx.status["instruments"] = status
    while not ctx.stop.is_set():
        for category, instruments in by_category.items():
            try:
                infos = await rest.instruments(category)
            except RestError as err:
                log.warning("bybit instruments-info %s failed: %s", category, err)
                status[category] = {"error": str(err)}
                continue
            for client in clients:
                if client.category == category:
                    client.instruments_info(infos)
            mismatches = check_instruments(instruments, infos)
            for problem in ("tick_size", "not_listed", "status"):
                n = sum(1 for m in mismatches if m.problem == problem)
                MISMATCHES.labels(category, problem).set(n)
            for m in mismatches:
                log.warning("bybit instrument mismatch: %s", m.describe())
            wanted = {i.bybit.symbol for i in instruments if i.bybit is not None}
            status[category] = {
                "checked": len(instruments),
                "mismatches": [m.describe() for m in mismatches],
                "venue": describe_infos([i for i in infos if i.symbol in wanted]),
            }
        with contextlib.suppress(TimeoutError):
            if first is not None:
                first.set()
            await asyncio.wait_for(ctx.stop.wait(), ctx.settings.bybit_instruments_refresh_s)


async def main(ctx: ServiceContext[BybitSettings]) -> None:
    s = ctx.settings
    registry = load_registry(s.registry_file or None)
    claims = SourceClaims(ctx.redis, venue=VENUE, worker_id=ctx.worker_id, service=NAME)
    by_category = await keep_claimed(claims, bybit_instruments(registry, s.instruments))
    ctx.status["bybit"] = {}
    ctx.status["source_refused"] = claims.refused
    if not by_category:
        log.warning("no Bybit instruments selected (OF_INSTRUMENTS=%r); idle", s.instruments)
        ctx.status["bybit"] = {"state": "no instruments"}
        await ctx.stop.wait()
        return
    rest = s.rest_client(ctx.clock)
    selected = [i.symbol for insts in by_category.values() for i in insts]
    resume = await published_tail(ctx.redis, selected) if s.bybit_backfill else {}
    client_stop = asyncio.Event()
    published = asyncio.Event()
    clients: list[BybitClient] = []
    publishers: list[Publisher] = []
    recorders: list[RecordingWriter] = []
    for category in CATEGORIES:
        instruments = by_category.get(category)
        if not instruments:
            continue
        parser = BybitParser(category, Registry(instruments), depth=s.bybit_depth)
        outbox = Outbox(s.bybit_outbox_max)
        recorder = s.recorder(s.record_dir, category) if s.record_dir else None
        if recorder is not None:
            recorders.append(recorder)
        client = BybitClient(
            url=s.bybit_ws_url,
            category=category,
            parser=parser,
            instruments=instruments,
            clock=ctx.clock,
            options=s.client_options(),
            outbox=outbox,
            rest=rest,
            recorder=recorder,
            resume={i.symbol: resume[i.symbol] for i in instruments if i.symbol in resume},
        )
        clients.append(client)
        symbols = [i.symbol for i in instruments]
        publishers.append(Publisher(ctx, client, outbox, symbols, claims))
    checked = asyncio.Event()
    check = asyncio.create_task(
        _instrument_check(ctx, rest, by_category, clients, checked), name="bybit-check"
    )
    # Renewed until cancelled after the drain: the claims must outlast the last flush.
    renewal = asyncio.create_task(claims.run(asyncio.Event()), name="bybit-claims")
    # The venue's tick goes out before the first trade when REST answers in time (analytics then
    # adopts it at once); otherwise the clients start anyway and it follows when REST answers.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(checked.wait(), _FIRST_CHECK_S)
    client_tasks = [asyncio.create_task(_supervise(c, client_stop)) for c in clients]
    pub_tasks = [asyncio.create_task(p.run(published), name="bybit-publisher") for p in publishers]
    status_task = asyncio.create_task(_status_loop(ctx, clients, publishers, recorders))
    try:
        await ctx.stop.wait()
    finally:
        # connections first (their last gap markers go into the outboxes), then drain and flush
        client_stop.set()
        await asyncio.gather(*client_tasks, return_exceptions=True)
        published.set()
        drain = max(1.0, s.shutdown_timeout_s / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pub_tasks, return_exceptions=True), drain)
        for task in [check, status_task, renewal, *pub_tasks]:
            task.cancel()
        await asyncio.gather(check, status_task, renewal, *pub_tasks, return_exceptions=True)
        with contextlib.suppress(OSError, RedisError):
            await claims.release()
        for recorder in recorders:
            recorder.close()
        await rest.aclose()
        _update_status(ctx, clients, publishers)


async def _supervise(client: BybitClient, stop: asyncio.Event) -> None:
    """Run a connection manager; a bug that escapes it restarts it instead of silencing a feed."""
    while not stop.is_set():
        try:
            await client.run(stop)
        except Exception:
            log.exception("bybit %s: connection manager failed; restarting", client.category)
            client.counters["crashes"] = client.counters.get("crashes", 0) + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _status_loop(
    ctx: ServiceContext[BybitSettings],
    clients: Sequence[BybitClient],
    publishers: Sequence[Publisher],
    recorders: Sequence[RecordingWriter],
) -> None:
    while True:
        _update_status(ctx, clients, publishers)
        for recorder in recorders:
            recorder.flush()  # a killed feed loses at most a second of its recording
        await asyncio.sleep(1.0)


def _update_status(
    ctx: ServiceContext[BybitSettings],
    clients: Sequence[BybitClient],
    publishers: Sequence[Publisher],
) -> None:
    out: dict[str, object] = {}
    for client, pub in zip(clients, publishers, strict=True):
        st = client.status()
        seen = pub.parser_seen
        for name, value in client.parser.counters.items():
            if value > seen.get(name, 0):
                PARSER_EVENTS.labels(client.category, name).inc(value - seen.get(name, 0))
                seen[name] = value
        st["published"] = pub.published
        st["publish_errors"] = pub.flush_errors
        out[client.category] = st
    ctx.status["bybit"] = out


SERVICE = Service(name=NAME, settings_type=BybitSettings, main=main, summary="Bybit v5 feed")
