"""The MetaTrader 5 feed service: settings and wiring of client, feed, parser and bus.

Ticks and DOM of every selected instrument with an MT5 venue go to ``of:{SYM}:trades`` / ``:book``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec
from redis.exceptions import RedisError

from of_feed_mt5.bridge import BridgeClient
from of_feed_mt5.client import Mt5Client
from of_feed_mt5.discovery import DEFAULT_SUFFIXES, parse_suffixes
from of_feed_mt5.feed import FeedConfig, Mt5Feed
from of_feed_mt5.native import NativeClient
from of_feed_mt5.outlet import CATEGORY, VENUE, Outlet
from of_feed_mt5.parser import Mt5Parser
from of_feed_mt5.servertime import ClockSpecError, ServerClock
from of_feed_mt5.side import DEFAULT_SIDE_RULE, SideRule
from ofcommon import keys
from ofcommon.bus import DeadLetters, Redis, decode_fields
from ofcommon.instruments import Instrument, Registry, load_registry
from ofcommon.messages import Trade
from ofcommon.recording import RecordingWriter
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import BaseSettings, Port, Secret
from ofcommon.sourceclaim import ClaimedProducer, SourceClaims

log = logging.getLogger(__name__)


class Mt5Settings(BaseSettings, kw_only=True, frozen=True):
    mt5_bridge_host: str = ""
    mt5_bridge_port: Port = 18812
    mt5_login: int = 0
    mt5_password: Secret = Secret("")
    mt5_server: str = ""
    mt5_path: str = ""
    mt5_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    mt5_poll_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 100
    mt5_book: bool = True
    mt5_history_days: Annotated[float, msgspec.Meta(ge=0, le=31)] = 1.0
    mt5_server_offset_min: Annotated[str, msgspec.Meta(pattern=r"^(auto|[+-]?\d{1,3})$")] = "auto"
    mt5_server_tz: str = ""
    mt5_side_rule: SideRule = DEFAULT_SIDE_RULE
    mt5_symbol_suffixes: str = ",".join(DEFAULT_SUFFIXES)
    mt5_record_dir: str = ""

    docs: ClassVar = {
        **BaseSettings.docs,
        "mt5_bridge_host": "RPyC bridge host (mt5linux); empty = native MetaTrader5 package",
        "mt5_bridge_port": "RPyC bridge port",
        "mt5_login": "trading account login (0 = use the terminal's current login)",
        "mt5_password": "trading account password",
        "mt5_server": "broker server name",
        "mt5_path": "terminal64.exe to attach to or start; empty = the installed terminal",
        "mt5_timeout_s": "seconds a terminal call (or bridge round trip) may take",
        "mt5_poll_ms": "milliseconds between polls of ticks and DOM",
        "mt5_book": "poll the DOM (market_book_get) of symbols that have one",
        "mt5_history_days": "days of tick history (M1 bars if no ticks) published as backfill"
        " at start; 0 = none",
        "mt5_server_offset_min": "broker server clock minus UTC in minutes (+120);"
        " auto = detect at startup from a live quote",
        "mt5_server_tz": "broker server clock as a zone, DST included (EET,"
        " America/New_York+7); overrides the offset",
        "mt5_side_rule": "side of trades without a BUY/SELL flag: lee_ready (quote rule, tick"
        " test at the mid) or tick_rule",
        "mt5_symbol_suffixes": "comma-separated broker suffixes tried after the registry's"
        " names (EURUSD -> EURUSDm, EURUSD.cash, ...)",
        "mt5_record_dir": "also record every frame here (ofx replay reads it); empty = off",
    }

    def __post_init__(self) -> None:
        if self.mt5_server_tz:
            try:
                ServerClock.parse(self.mt5_server_tz)
            except ClockSpecError as err:
                raise ValueError(f"OF_MT5_SERVER_TZ: {err}") from None
        if self.mt5_server_offset_min != "auto" and abs(int(self.mt5_server_offset_min)) > 840:
            raise ValueError("OF_MT5_SERVER_OFFSET_MIN: beyond ±840 minutes (14 h)")

    @property
    def clock_spec(self) -> str:
        """The server clock the feed uses: a zone, fixed minutes, or "auto"."""
        if self.mt5_server_tz:
            return self.mt5_server_tz
        if self.mt5_server_offset_min == "auto":
            return "auto"
        return f"{int(self.mt5_server_offset_min):+d}"


def feed_config(settings: Mt5Settings) -> FeedConfig:
    return FeedConfig(
        poll_ms=settings.mt5_poll_ms,
        book=settings.mt5_book,
        history_days=settings.mt5_history_days,
        clock=settings.clock_spec,
        side_rule=settings.mt5_side_rule,
        suffixes=parse_suffixes(settings.mt5_symbol_suffixes),
        path=settings.mt5_path,
        login=settings.mt5_login,
        password=settings.mt5_password.get(),
        server=settings.mt5_server,
        timeout_ms=int(settings.mt5_timeout_s * 1000),
    )


def client_factory(settings: Mt5Settings) -> tuple[Callable[[], Mt5Client], str]:
    """A fresh client per session, and its label for the status: the bridge when a host is
    set, else the MetaTrader5 package in this process."""
    host, port = settings.mt5_bridge_host, settings.mt5_bridge_port
    if host:
        timeout = settings.mt5_timeout_s
        return (lambda: BridgeClient(host, port, timeout_s=timeout)), f"bridge {host}:{port}"
    return NativeClient, "native"


_TICK_ID = re.compile(r"^(\d+)\.\d+$")
_RESUME_SCAN = 500


def resume_reader(redis: Redis) -> Callable[[str], Awaitable[int | None]]:
    """Reads where the previous run stopped: the server ms in the newest tick trade id
    (``<time_msc>.<n>``) among the last entries of the instrument's trades stream."""

    async def last_tick_msc(instrument: str) -> int | None:
        # redis-py types replies as a union of every protocol shape; this one is RESP2 bytes
        entries: Any = await redis.xrevrange(keys.stream(instrument, "trades"), count=_RESUME_SCAN)
        for _entry_id, fields in entries or ():
            msg, _raw, _reason = decode_fields(fields)
            if isinstance(msg, Trade) and (m := _TICK_ID.match(msg.trade_id)):
                return int(m[1])
        return None

    return last_tick_msc


def mt5_instruments(registry: Registry, selection: str) -> list[Instrument]:
    """The instruments of ``OF_INSTRUMENTS`` that have MetaTrader 5 names (what can be recorded)."""
    return [i for i in registry.select(selection) if i.mt5 is not None]


def published_instruments(registry: Registry, selection: str) -> list[Instrument]:
    """Those of mt5_instruments whose source is MT5: the ones this feed publishes."""
    chosen = mt5_instruments(registry, selection)
    elsewhere = [f"{i.symbol} ({i.feed_venue})" for i in chosen if i.feed_venue != VENUE]
    if elsewhere:
        log.info("not published by this feed, their source is another venue: %s", elsewhere)
    return [i for i in chosen if i.feed_venue == VENUE]


async def main(ctx: ServiceContext[Mt5Settings]) -> None:
    settings = ctx.settings
    registry = load_registry(settings.registry_file)
    claims = SourceClaims(ctx.redis, venue=VENUE, worker_id=ctx.worker_id, service=ctx.name)
    wanted = published_instruments(registry, settings.instruments)
    await claims.acquire(i.symbol for i in wanted)
    ctx.status["source_refused"] = claims.refused
    instruments = [i for i in wanted if claims.holds(i.symbol)]
    writer = None
    if settings.mt5_record_dir:
        writer = RecordingWriter(Path(settings.mt5_record_dir), VENUE, CATEGORY)
    outlet = Outlet(
        parser=Mt5Parser(registry),
        producer=ClaimedProducer(ctx.redis, claims, service=ctx.name),
        dead_letters=DeadLetters(ctx.redis, ctx.name),
        writer=writer,
    )
    factory, label = client_factory(settings)
    ctx.status.update(instruments=len(instruments))
    feed = Mt5Feed(
        factory,
        feed_config(settings),
        instruments,
        outlet,
        clock=ctx.clock,
        status=ctx.status,
        client_label=label,
        resume=resume_reader(ctx.redis),
    )
    # Renewed until cancelled after the last flush: the claims must outlast it.
    renewal = asyncio.create_task(claims.run(asyncio.Event()), name="mt5-claims")
    try:
        await feed.run(ctx.stop)
    finally:
        with contextlib.suppress(OSError, RedisError, RuntimeError):
            await outlet.flush()
        outlet.close()
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        with contextlib.suppress(OSError, RedisError):
            await claims.release()


SERVICE = Service(
    name="feed_mt5", settings_type=Mt5Settings, main=main, summary="MetaTrader 5 feed"
)
