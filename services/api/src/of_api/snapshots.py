"""What a WebSocket client gets first on subscribing to (channel, instrument): the current
state, and the top entry id of each stream it was read from (later updates follow those ids).
"""

from __future__ import annotations

import asyncio
from typing import Any

from of_api import queries, views
from of_api.channels import route
from of_api.context import ApiContext
from ofcommon.messages import (
    Bar,
    Bias,
    BookStats,
    PatternSignal,
    ProfileUpdate,
    StrategyStatus,
    Trade,
    TradeEvent,
)

Tops = dict[str, str]


async def _tops(ctx: ApiContext, symbol: str, *kinds: str) -> Tops:
    out: Tops = {}
    for kind in kinds:
        top = await ctx.live.last_id(symbol, kind)
        out[kind] = top or "0-0"
    return out


def _before(tops: Tops, kind: str) -> str:
    return tops[kind] if tops[kind] != "0-0" else "+"


GATHER_S = 0.05  # a snapshot read waits this long for other clients subscribing to the same


class SnapshotCache:
    """One read per (channel, instrument) for the clients that subscribe to it while the read
    has not started yet (it waits GATHER_S for them): a reconnect storm of many clients costs
    one set of stream reads, not one per client. Every joiner registered its subscription
    before the read began, so what the read misses reaches it as an update (no gap), and the
    tops travel with the data, so each one drops exactly what the snapshot holds."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], asyncio.Future[tuple[Any, Tops]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, ctx: ApiContext, channel: str, symbol: str) -> tuple[Any, Tops]:
        key = (channel, symbol)
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._pending[key] = fut
            # its own task: a requester that goes away does not cancel the others' read
            self._tasks.add(task := asyncio.create_task(self._read(ctx, key, fut)))
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(fut)

    async def _read(
        self, ctx: ApiContext, key: tuple[str, str], fut: asyncio.Future[tuple[Any, Tops]]
    ) -> None:
        try:
            await asyncio.sleep(GATHER_S)
        finally:
            del self._pending[key]  # the read starts: later subscribers need a read of their own
        try:
            fut.set_result(await read(ctx, *key))
        except Exception as exc:
            fut.set_exception(exc)


_cache = SnapshotCache()


async def snapshot(ctx: ApiContext, channel: str, symbol: str) -> tuple[Any, Tops]:
    return await _cache.get(ctx, channel, symbol)


async def read(ctx: ApiContext, channel: str, symbol: str) -> tuple[Any, Tops]:
    live = ctx.live
    if channel == "tick":
        tops = await _tops(ctx, symbol, "trades")
        found = await live.recent(symbol, "trades", Trade, 1, before=_before(tops, "trades"))
        return (views.tick(found[0][1]) if found else None), tops
    if channel in ("candle", "delta"):
        tops = await _tops(ctx, symbol, "bars")
        recent = await live.recent(
            symbol, "bars", Bar, 200, before=_before(tops, "bars"), max_scan=400
        )
        if channel == "delta":
            one = next((b for _, b in recent if b.timeframe == "1m"), None)
            return (views.delta_point(one, one.cvd) if one else None), tops
        latest: dict[str, Bar] = {}
        for _, b in recent:
            latest.setdefault(b.timeframe, b)
        return {tf: views.candle(b) for tf, b in latest.items()}, tops
    if channel == "signal":
        tops = await _tops(ctx, symbol, "patterns")
        found_p = await live.recent(
            symbol, "patterns", PatternSignal, 20, before=_before(tops, "patterns")
        )
        return [route(p)[0].data for _, p in found_p], tops
    if channel == "trade_state":
        tops = await _tops(ctx, symbol, "status", "tradeevents")
        st = await live.recent(symbol, "status", StrategyStatus, 1, before=_before(tops, "status"))
        ev = await live.recent(
            symbol, "tradeevents", TradeEvent, 20, before=_before(tops, "tradeevents")
        )
        return {
            "status": route(st[0][1])[0].data if st else None,
            "events": [route(e)[0].data for _, e in ev],
        }, tops
    if channel == "volume_profile":
        tops = await _tops(ctx, symbol, "profile")
        found_v = await live.recent(
            symbol, "profile", ProfileUpdate, 50, before=_before(tops, "profile"), max_scan=5000
        )
        by_scope: dict[str, Any] = {}
        for _, p in found_v:
            by_scope.setdefault(p.scope, queries.profile_view(p))
        return by_scope, tops
    if channel == "bias":
        tops = await _tops(ctx, symbol, "bias")
        found_b = await live.recent(symbol, "bias", Bias, 1, before=_before(tops, "bias"))
        return (route(found_b[0][1])[0].data if found_b else None), tops
    if channel == "orderbook":
        tops = await _tops(ctx, symbol, "bookstats")
        found_s = await live.recent(
            symbol, "bookstats", BookStats, 1, before=_before(tops, "bookstats")
        )
        return {
            "stats": views.book_stats(found_s[0][1]) if found_s else None,
            "book": ctx.hub.books[symbol].view(10),
        }, tops
    return ctx.hub.stats(symbol), {}
