"""The live MT5 feed: connect, discover symbols, fix the server clock, warm up history, then poll.

Every poll result becomes a frame for an ``Outlet``; the client's blocking calls run on one thread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

from redis.exceptions import RedisError

from of_feed_mt5 import frames
from of_feed_mt5.client import (
    BookLevel,
    Mt5Client,
    Mt5ConnectionError,
    Mt5Error,
    Mt5Unavailable,
    SymbolDetails,
)
from of_feed_mt5.constants import IPC_ERRORS
from of_feed_mt5.cursor import MSC, TickCursor, TickRow
from of_feed_mt5.discovery import DEFAULT_SUFFIXES, candidates, match
from of_feed_mt5.eventclock import EventClock
from of_feed_mt5.outlet import Outlet
from of_feed_mt5.servertime import ClockSpecError, ServerClock, detect_offset_minutes
from of_feed_mt5.side import DEFAULT_SIDE_RULE, SideRule
from of_feed_mt5.worker import Worker
from ofcommon.clock import Clock, LiveClock
from ofcommon.instruments import Instrument

log = logging.getLogger(__name__)

T = TypeVar("T")

_DAY_MS: Final = 86_400_000
_MINUTE_MS: Final = 60_000
_BARS_PER_FRAME: Final = 10_000
_CLEANUP_TIMEOUT_S: Final = 5.0
_RESUME_OVERLAP_MS: Final = 1_000

# Where the previous run stopped for an instrument: the server ms of its last published tick.
ResumePoint = Callable[[str], Awaitable[int | None]]


@dataclass(frozen=True)
class FeedConfig:
    """What the feed needs from the service settings (kept apart so ``ofx record`` reuses it)."""

    poll_ms: int = 100
    book: bool = True
    history_days: float = 0.0
    clock: str = "auto"  # "auto" (detect at startup), minutes like "+120", or a zone spec
    side_rule: SideRule = DEFAULT_SIDE_RULE
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    path: str = ""
    login: int = 0
    password: str = field(default="", repr=False)
    server: str = ""
    timeout_ms: int = 60_000
    live_count: int = 1_000
    history_count: int = 50_000
    lookback_ms: int = 1_000
    heartbeat_s: float = 1.0
    retry_max_s: float = 30.0


class _Stopped(Exception):
    """The stop event was set while waiting on the terminal."""


class _Throttle:
    """At most one log line per key and interval, with the count of what was held back."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval = interval_s
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._next[key] = now + self._interval
        held = self._held.pop(key, 0)
        suffix = f" (+{held} similar)" if held else ""
        log.log(level, msg + suffix, *args)


@dataclass
class _Symbol:
    """Polling state of one instrument; it outlives reconnects, so no tick is lost across them."""

    inst: Instrument
    details: SymbolDetails
    cursor: TickCursor
    live_from_msc: int  # server ms: ticks before it are history (backfill)
    history_from_msc: int
    backfilling: bool
    events: EventClock
    book_on: bool = False
    last_book: tuple[BookLevel, ...] | None = None
    got_ticks: bool = False
    next_beat: float = 0.0

    @property
    def name(self) -> str:
        return self.details.name


class Mt5Feed:
    """Runs until ``stop``: sessions of connect → discover → clock → poll, reconnecting with
    backoff after a lost link. Status for the health report goes into ``status``."""

    def __init__(
        self,
        client_factory: Callable[[], Mt5Client],
        config: FeedConfig,
        instruments: Sequence[Instrument],
        outlet: Outlet,
        *,
        clock: Clock | None = None,
        status: dict[str, Any] | None = None,
        client_label: str = "",
        resume: ResumePoint | None = None,
    ) -> None:
        self._factory = client_factory
        self._resume = resume
        self._cfg = config
        self._instruments = [i for i in instruments if i.mt5 is not None]
        self._outlet = outlet
        self._clock: Clock = clock or LiveClock()
        self.status: dict[str, Any] = status if status is not None else {}
        self._symbols: dict[str, _Symbol] = {}
        self._server_clock: ServerClock | None = None
        self._worker: Worker | None = None
        self._stop_task: asyncio.Task[bool] | None = None
        self._throttle = _Throttle()
        self.errors = 0
        self.status.update(connection="starting", client=client_label, error="")

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._worker = Worker()
        self._stop_task = asyncio.ensure_future(stop.wait())
        delay = 1.0
        try:
            while not stop.is_set():
                outcome = await self._attempt(stop)
                if outcome == "failed":
                    await self._sleep(stop, delay)
                    delay = min(delay * 2, self._cfg.retry_max_s)
                else:
                    delay = 1.0
        finally:
            self._stop_task.cancel()
            self._worker.close()
            self.status.update(connection="stopped")

    async def _attempt(self, stop: asyncio.Event) -> Literal["stopped", "failed", "unavailable"]:
        """One session, closed whatever happens; how it ended."""
        client: Mt5Client | None = None
        try:
            client = self._factory()
            self.status.update(connection="connecting")
            await self._session(client, stop)
            return "stopped"
        except _Stopped:
            return "stopped"
        except Mt5Unavailable as err:
            self.errors += 1
            self.status.update(connection="unavailable", error=str(err))
            log.error("MT5 unavailable: %s", err)
            await stop.wait()  # retrying cannot help; stay up and say why
            return "unavailable"
        except Exception as err:
            # Anything else (a lost link, a failed call, a bug) ends this session only.
            self.errors += 1
            self.status.update(connection="down", error=str(err) or repr(err))
            level = logging.WARNING if isinstance(err, Mt5Error) else logging.ERROR
            log.log(level, "MT5 session ended: %s; reconnecting", err)
            log.debug("session failure", exc_info=True)
            return "failed"
        finally:
            if client is not None:
                await self._close_session(client)

    async def _close_session(self, client: Mt5Client) -> None:
        """Release the books and shut the client down: one bounded, best-effort job, because a
        hung terminal must not hold up a stop."""
        books = [sym.name for sym in self._symbols.values() if sym.book_on]
        for sym in self._symbols.values():
            sym.book_on = False

        def close() -> None:
            for name in books:
                with contextlib.suppress(Exception):
                    client.market_book_release(name)
            client.shutdown()

        assert self._worker is not None
        try:
            await asyncio.wait_for(self._worker.submit(close), _CLEANUP_TIMEOUT_S)
        except Exception as err:  # cleanup of a broken link: nothing more to do
            log.debug("closing the MT5 session failed: %r", err)

    async def _session(self, client: Mt5Client, stop: asyncio.Event) -> None:
        await self._connect(client)
        symbols = await self._discover(client)
        clock = await self._detect_clock(client, symbols, stop)
        self.status.update(connection="up", error="", clock=clock.spec)
        await self._prepare(client, symbols, clock)
        mapping = ", ".join(f"{i.symbol}={d.name}" for i, d in symbols)
        log.info("MT5 connected (%s), clock %s: %s", self.status["client"], clock.spec, mapping)
        await self._poll_loop(client, clock, stop)

    # --- calls -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on the worker thread; raises ``_Stopped`` if stop comes first."""
        assert self._worker is not None
        assert self._stop_task is not None
        fut = self._worker.submit(functools.partial(fn, *args, **kwargs))
        waiters: set[asyncio.Future[Any]] = {fut, self._stop_task}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not fut.done():
            fut.cancel()
            raise _Stopped
        return fut.result()

    async def _failure(self, client: Mt5Client, what: str) -> Mt5Error:
        """The error behind a None/False result: IPC codes mean the link is gone."""
        code, message = await self._call(client.last_error)
        text = f"{what} failed: ({code}) {message}"
        if code in IPC_ERRORS:
            return Mt5ConnectionError(text, code)
        return Mt5Error(text, code)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    # --- session steps -----------------------------------------------------------------------

    async def _connect(self, client: Mt5Client) -> None:
        cfg = self._cfg
        if not await self._call(client.initialize, cfg.path or None, timeout=cfg.timeout_ms):
            raise await self._failure(client, "initialize")
        if cfg.login:
            ok = await self._call(
                client.login,
                cfg.login,
                password=cfg.password,
                server=cfg.server,
                timeout=cfg.timeout_ms,
            )
            if not ok:
                raise await self._failure(client, f"login {cfg.login}@{cfg.server or '?'}")

    async def _discover(self, client: Mt5Client) -> list[tuple[Instrument, SymbolDetails]]:
        listing = await self._call(client.symbols_get)
        names = None if listing is None else {d.name for d in listing}
        if names is None:
            log.warning("symbols_get failed; probing candidate names one by one")
        found: list[tuple[Instrument, SymbolDetails]] = []
        missing: list[str] = []
        for inst in self._instruments:
            assert inst.mt5 is not None
            details = await self._find(client, inst, names)
            if details is None:
                missing.append(inst.symbol)
            else:
                found.append((inst, details))
        self.status.update(
            symbols={inst.symbol: d.name for inst, d in found}, missing=missing, error=""
        )
        if missing:
            log.warning("no broker symbol for %s", ", ".join(missing))
        if not found:
            raise Mt5Error(f"none of {len(self._instruments)} instruments found at this broker")
        return found

    async def _find(
        self, client: Mt5Client, inst: Instrument, names: set[str] | None
    ) -> SymbolDetails | None:
        assert inst.mt5 is not None
        wanted = candidates(inst.mt5.names, self._cfg.suffixes)
        details: SymbolDetails | None = None
        if names is not None:
            name = match(wanted, names)
            details = None if name is None else await self._call(client.symbol_info, name)
        else:
            for name in wanted:
                details = await self._call(client.symbol_info, name)
                if details is not None:
                    break
        if details is None:
            return None
        # Ticks and DOM only flow for symbols in Market Watch.
        selected = details.visible and details.select
        if not selected and not await self._call(client.symbol_select, details.name, True):
            err = await self._failure(client, f"symbol_select {details.name}")
            log.warning("%s: %s", inst.symbol, err)
            return None
        return details

    async def _detect_clock(
        self,
        client: Mt5Client,
        found: list[tuple[Instrument, SymbolDetails]],
        stop: asyncio.Event,
    ) -> ServerClock:
        """The configured clock, or an offset detected from a quote that is provably live: its
        time advanced between two reads. A stale quote (weekend) would give a wrong offset, so
        the feed waits instead of publishing wrong times."""
        if self._server_clock is not None:
            return self._server_clock
        if self._cfg.clock != "auto":
            try:
                self._server_clock = ServerClock.parse(self._cfg.clock)
            except ClockSpecError as err:
                raise Mt5Unavailable(str(err)) from None
            return self._server_clock
        self.status.update(clock="detecting: waiting for a live quote")
        previous: dict[str, int] = {}
        while True:
            current: dict[str, int] = {}
            for _inst, details in found:
                info = await self._call(client.symbol_info, details.name)
                current[details.name] = 0 if info is None else info.time
            wall_ms = self._clock.now_ns() // 1_000_000
            fresh = [t for n, t in current.items() if n in previous and t > previous[n]]
            if fresh:
                minutes = detect_offset_minutes(max(fresh) * 1000, wall_ms)
                if minutes is not None:
                    log.info("broker server clock detected: UTC%+d min", minutes)
                    self._server_clock = ServerClock.fixed(minutes)
                    return self._server_clock
            previous = current
            await self._sleep(stop, 1.0)
            if stop.is_set():
                raise _Stopped

    async def _prepare(
        self,
        client: Mt5Client,
        found: list[tuple[Instrument, SymbolDetails]],
        clock: ServerClock,
    ) -> None:
        wall_ns = self._clock.now_ns()
        server_now = clock.to_server_ms(wall_ns // 1_000_000)
        cfg = self._cfg
        for inst, details in found:
            sym = self._symbols.get(inst.symbol)
            if sym is None or sym.name != details.name:
                resume = await self._resume_point(inst.symbol)
                sym = self._new_symbol(inst, details, server_now, resume)
                self._symbols[inst.symbol] = sym
            sym.details = details
            if details.time > 0:
                sym.events.observe(clock.to_utc_ms(details.time * 1000) * 1_000_000, wall_ns)
            frame = frames.SymbolFrame(
                instrument=inst.symbol,
                symbol=details.name,
                clock=clock.spec,
                digits=details.digits,
                point=details.point,
                tick_size=details.trade_tick_size,
                book_depth=details.ticks_bookdepth,
                description=details.description,
            )
            await self._outlet.frame(wall_ns, inst.symbol, "trades", frames.encode(frame))
            if cfg.book and details.ticks_bookdepth > 0:
                sym.book_on = bool(await self._call(client.market_book_add, details.name))
                if not sym.book_on:
                    log.warning("%s: %s", inst.symbol, await self._failure(client, "book add"))
        for gone in set(self._symbols) - {inst.symbol for inst, _ in found}:
            del self._symbols[gone]
        self.status.update(book=sorted(s for s, sym in self._symbols.items() if sym.book_on))

    async def _resume_point(self, instrument: str) -> int | None:
        if self._resume is None or self._cfg.history_days <= 0:
            return None
        try:
            return await self._resume(instrument)
        except Exception as err:  # without it the warm-up just starts at its usual point
            log.warning("%s: cannot read where the last run stopped: %s", instrument, err)
            return None

    def _new_symbol(
        self, inst: Instrument, details: SymbolDetails, server_now: int, resume: int | None
    ) -> _Symbol:
        cfg = self._cfg
        history_from = server_now - int(cfg.history_days * _DAY_MS)
        if resume is not None:
            # Trade ids are positions within a millisecond, so restarting a little before the
            # last published tick reproduces the same ids: the overlap is dropped downstream by
            # id, and it warms the side classifier up. Nothing older is published again.
            history_from = max(history_from, resume - _RESUME_OVERLAP_MS)
        backfilling = cfg.history_days > 0
        start = history_from if backfilling else server_now - cfg.lookback_ms
        count = cfg.history_count if backfilling else cfg.live_count
        slack = max(1_000, 2 * cfg.poll_ms) * 1_000_000
        return _Symbol(
            inst=inst,
            details=details,
            cursor=TickCursor(start, count=count),
            live_from_msc=server_now,
            history_from_msc=history_from,
            backfilling=backfilling,
            events=EventClock(slack),
        )

    # --- polling -----------------------------------------------------------------------------

    async def _poll_loop(self, client: Mt5Client, clock: ServerClock, stop: asyncio.Event) -> None:
        poll_s = self._cfg.poll_ms / 1000
        redis_delay = 0.5
        while not stop.is_set():
            started = self._clock.monotonic()
            for sym in list(self._symbols.values()):
                await self._poll_symbol(client, clock, sym)
            await self._heartbeats()
            try:
                await self._outlet.flush()
                redis_delay = 0.5
                self.status.pop("redis", None)
            except (OSError, RedisError, RuntimeError) as err:
                # Stop polling: the terminal keeps the ticks, the cursor resumes when Redis is back.
                self.status["redis"] = f"publishing failed: {err}"
                self._throttle("redis", logging.ERROR, "publishing to Redis failed: %s", err)
                await self._flush_until_ok(stop, redis_delay)
                redis_delay = min(redis_delay * 2, 10.0)
            self._report()
            more = any(s.cursor.more for s in self._symbols.values())
            elapsed = self._clock.monotonic() - started
            await self._sleep(stop, 0 if more else poll_s - elapsed)

    async def _flush_until_ok(self, stop: asyncio.Event, delay: float) -> None:
        while not stop.is_set():
            await self._sleep(stop, delay)
            try:
                await self._outlet.flush()
                return
            except (OSError, RedisError, RuntimeError) as err:
                self.status["redis"] = f"publishing failed: {err}"
                delay = min(delay * 2, 10.0)

    async def _poll_symbol(self, client: Mt5Client, clock: ServerClock, sym: _Symbol) -> None:
        try:
            await self._poll_ticks(client, clock, sym)
            if sym.book_on:
                await self._poll_book(client, sym)
        except (Mt5ConnectionError, _Stopped):
            raise
        except Mt5Error as err:
            self.errors += 1
            self._throttle(
                f"{sym.inst.symbol}:{err.code}", logging.WARNING, "%s: %s", sym.name, err
            )
        except Exception:
            # A bug must not silence every other instrument: log it and keep polling.
            self.errors += 1
            self._throttle(f"{sym.inst.symbol}:bug", logging.ERROR, "%s: poll failed", sym.name)
            log.debug("poll failure", exc_info=True)

    async def _poll_ticks(self, client: Mt5Client, clock: ServerClock, sym: _Symbol) -> None:
        cursor = sym.cursor
        when = datetime.fromtimestamp(cursor.request_from_s, UTC)
        arr = await self._call(
            client.copy_ticks_from, sym.name, when, cursor.count, client.COPY_TICKS_ALL
        )
        wall_ns = self._clock.now_ns()
        if arr is None or (len(arr) == 0 and sym.backfilling and not sym.got_ticks):
            error = None if arr is not None else await self._failure(client, "copy_ticks_from")
            if isinstance(error, Mt5ConnectionError):
                raise error
            if sym.backfilling and not sym.got_ticks:
                await self._warm_up_bars(client, clock, sym, wall_ns, error)
                return
            assert error is not None
            raise error
        rows: list[TickRow] = arr.tolist()
        new = cursor.advance(rows)
        if new:
            sym.got_ticks = True
            await self._emit_ticks(clock, sym, new, wall_ns)
        if sym.backfilling and not cursor.more:
            sym.backfilling = False
            cursor.retune(self._cfg.live_count)
            log.info("%s: history caught up", sym.inst.symbol)

    async def _emit_ticks(
        self, clock: ServerClock, sym: _Symbol, new: list[TickRow], wall_ns: int
    ) -> None:
        split = bisect.bisect_left([r[MSC] for r in new], sym.live_from_msc)
        for rows, backfill in ((new[:split], True), (new[split:], False)):
            if rows:
                data = frames.ticks_frame(
                    sym.inst.symbol,
                    sym.name,
                    clock.spec,
                    rows,
                    backfill=backfill,
                    side_rule=self._cfg.side_rule,
                )
                await self._outlet.frame(wall_ns, sym.inst.symbol, "trades", data)
        sym.events.observe(clock.to_utc_ms(new[-1][MSC]) * 1_000_000, wall_ns)

    async def _warm_up_bars(
        self,
        client: Mt5Client,
        clock: ServerClock,
        sym: _Symbol,
        wall_ns: int,
        error: Mt5Error | None,
    ) -> None:
        """No tick history: warm up from closed M1 bars, then poll ticks from the current
        minute, so history and live ticks neither overlap nor leave a gap."""
        minute_start = sym.live_from_msc // _MINUTE_MS * _MINUTE_MS
        log.info("%s: no tick history (%s); warming up from M1 bars", sym.inst.symbol, error)
        rates = await self._call(
            client.copy_rates_range,
            sym.name,
            client.TIMEFRAME_M1,
            datetime.fromtimestamp(sym.history_from_msc / 1000, UTC),
            datetime.fromtimestamp(minute_start / 1000, UTC),
        )
        sym.backfilling = False
        sym.cursor = TickCursor(minute_start, count=self._cfg.live_count)
        if rates is None:
            log.warning("%s: %s", sym.inst.symbol, await self._failure(client, "M1 history"))
            return
        bars = [b for b in rates.tolist() if b[0] * 1000 + _MINUTE_MS <= minute_start]
        for i in range(0, len(bars), _BARS_PER_FRAME):
            frame = frames.BarsFrame(
                instrument=sym.inst.symbol,
                symbol=sym.name,
                clock=clock.spec,
                bars=bars[i : i + _BARS_PER_FRAME],
            )
            await self._outlet.frame(wall_ns, sym.inst.symbol, "trades", frames.encode(frame))

    async def _poll_book(self, client: Mt5Client, sym: _Symbol) -> None:
        levels = await self._call(client.market_book_get, sym.name)
        if levels is None:
            raise await self._failure(client, "market_book_get")
        if levels == sym.last_book:
            return  # polled, not pushed: an unchanged book is no news
        wall_ns = self._clock.now_ns()
        ts_event = sym.events.now(wall_ns)
        if ts_event is None:
            return
        sym.last_book = levels
        frame = frames.BookFrame(
            instrument=sym.inst.symbol,
            symbol=sym.name,
            ts_event=ts_event,
            levels=[(lv.type, lv.price, lv.volume, lv.volume_dbl) for lv in levels],
            depth=sym.details.ticks_bookdepth,
        )
        await self._outlet.frame(wall_ns, sym.inst.symbol, "book", frames.encode(frame))

    async def _heartbeats(self) -> None:
        mono = self._clock.monotonic()
        wall_ns = self._clock.now_ns()
        for sym in self._symbols.values():
            # Not while history streams in: a beat at "now" would make that history look late.
            if mono < sym.next_beat or sym.backfilling:
                continue
            sym.next_beat = mono + self._cfg.heartbeat_s
            ts_event = sym.events.now(wall_ns)
            if ts_event is None:
                continue
            frame = frames.HeartbeatFrame(
                instrument=sym.inst.symbol, symbol=sym.name, ts_event=ts_event
            )
            await self._outlet.frame(wall_ns, sym.inst.symbol, "trades", frames.encode(frame))

    def _report(self) -> None:
        counts = dict(self._outlet.counts)
        parser = self._outlet.parser
        if parser is not None:
            counts.update(parser.counts)
        counts["errors"] = self.errors
        self.status.update(
            counts=counts,
            backfilling=sorted(s for s, sym in self._symbols.items() if sym.backfilling),
        )
