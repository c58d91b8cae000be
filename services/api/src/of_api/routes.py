"""The REST endpoints: the seed's sixteen, the journal and performance; thin over ``queries``.

Parameters are validated by FastAPI (422 with the reason); unknown instruments are 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from of_api import queries, views
from of_api.auth import require_token
from of_api.context import ApiContext
from of_api.performance import performance as perf

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1D"]
Count = Annotated[int, Query(ge=1, le=5000, description="bars returned at most (the last ones)")]
Start = Annotated[
    int | None, Query(ge=0, le=9_000_000_000, description="window start, Unix seconds")
]
End = Annotated[
    int | None, Query(ge=0, le=9_000_000_000, description="window end (excluded), Unix s")
]
Range = Annotated[
    int,
    Query(ge=0, le=400 * 86400, description="seconds back from the newest bar; 0 = no limit"),
]
Tf = Annotated[Timeframe, Query(description="bar timeframe")]

router = APIRouter(dependencies=[Depends(require_token)])


def ctx_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(ctx_of)]


@router.get("/api/instruments", summary="Served instruments with their latest state")
async def instruments(ctx: Ctx) -> list[dict[str, Any]]:
    return await queries.instruments(ctx)


@router.get("/api/scanner", summary="Instruments ranked by scanner priority (0-118)")
async def scanner(ctx: Ctx) -> list[dict[str, Any]]:
    return await queries.scanner(ctx)


@router.get("/api/markers/{symbol}", summary="Chart markers of pattern signals and trade events")
async def markers(
    ctx: Ctx, symbol: str, limit: Annotated[int, Query(ge=1, le=500)] = 200, tf: Tf = "1m"
) -> list[dict[str, Any]]:
    ctx.instrument(symbol)
    return await queries.markers(ctx, symbol, limit, tf)


@router.get("/api/candles/{symbol}", summary="OHLCV candles: closed from PostgreSQL + the open bar")
async def candles(
    ctx: Ctx,
    symbol: str,
    tf: Tf = "1m",
    count: Count = 500,
    start: Start = None,
    end: End = None,
    range: Range = 0,
) -> list[dict[str, Any]]:
    inst = ctx.instrument(symbol)
    return [views.candle(b) for b in await queries.bars(ctx, inst, tf, count, start, end, range)]


@router.get("/api/volume-profile/{symbol}", summary="Session or composite volume profiles")
async def volume_profile(
    ctx: Ctx,
    symbol: str,
    scope: Literal["session", "composite"] = "session",
    days: Annotated[int, Query(ge=1, le=30)] = 5,
    range: Range = 0,
) -> list[dict[str, Any]]:
    inst = ctx.instrument(symbol)
    if range > 0:
        count = min(queries.MAX_1M, range // 60 + 2)
        bar_list = await queries.bars(ctx, inst, "1m", count, None, None, range)
        newest = bar_list[-1].close_ts if bar_list else None
        return [queries.range_profile(inst, bar_list, newest)] if bar_list else []
    return await queries.profiles(ctx, symbol, scope, days)


@router.get("/api/bias/{symbol}", summary="The daily bias and qualified levels")
async def bias(ctx: Ctx, symbol: str) -> dict[str, Any]:
    ctx.instrument(symbol)
    return await queries.bias(ctx, symbol)


@router.get(
    "/api/signals/{symbol}", summary="The aggregator's signals (trade events), newest first"
)
async def signals(
    ctx: Ctx, symbol: str, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    ctx.instrument(symbol)
    return await queries.signals(ctx, symbol, limit)


@router.get("/api/trade/{symbol}", summary="The open trade, if any")
async def trade(ctx: Ctx, symbol: str) -> dict[str, Any]:
    ctx.instrument(symbol)
    return await queries.trade(ctx, symbol)


@router.get("/api/strategy-status/{symbol}", summary="The six-step strategy checklist")
async def strategy_status(ctx: Ctx, symbol: str) -> dict[str, Any]:
    ctx.instrument(symbol)
    return await queries.strategy_status(ctx, symbol)


@router.get("/api/orderbook/{symbol}", summary="The L2 book (top levels) and its statistics")
async def orderbook(
    ctx: Ctx, symbol: str, levels: Annotated[int, Query(ge=1, le=25)] = 10
) -> dict[str, Any]:
    ctx.instrument(symbol)
    return await queries.orderbook(ctx, symbol, levels)


@router.get("/api/delta/{symbol}", summary="Cumulative delta over the window, per bar")
async def delta(
    ctx: Ctx,
    symbol: str,
    tf: Tf = "1m",
    count: Count = 500,
    start: Start = None,
    end: End = None,
    range: Range = 0,
) -> list[dict[str, Any]]:
    inst = ctx.instrument(symbol)
    return await queries.delta(ctx, await queries.bars(ctx, inst, tf, count, start, end, range))


@router.get("/api/footprint/{symbol}", summary="Footprint bars: volume at bid/ask per price row")
async def footprint(
    ctx: Ctx,
    symbol: str,
    tf: Tf = "1m",
    count: Annotated[int, Query(ge=1, le=2000)] = 100,
    start: Start = None,
    end: End = None,
    range: Range = 0,
) -> list[dict[str, Any]]:
    inst = ctx.instrument(symbol)
    return [views.footprint(b) for b in await queries.bars(ctx, inst, tf, count, start, end, range)]


@router.get("/api/tape/{symbol}", summary="Time and sales: the latest trades, newest first")
async def tape(
    ctx: Ctx, symbol: str, count: Annotated[int, Query(ge=1, le=200)] = 60
) -> list[dict[str, Any]]:
    ctx.instrument(symbol)
    return await queries.tape(ctx, symbol, count)


@router.get("/api/microstructure/{symbol}", summary="Book, delta and the latest patterns")
async def microstructure(ctx: Ctx, symbol: str) -> dict[str, Any]:
    return await queries.microstructure(ctx, ctx.instrument(symbol))


@router.get("/api/stats", summary="System-wide statistics")
async def stats(ctx: Ctx) -> dict[str, Any]:
    hub = ctx.hub
    return {
        "data_source": "pipeline",
        "ws_clients": hub.clients,
        "running": hub.ready.is_set(),
        "stream_entries_seen": dict(hub.entries),
        "undecodable_entries": hub.undecodable + ctx.live.undecodable,
        "instruments": [hub.stats(i.symbol) for i in ctx.served],
    }


@router.get("/api/journal", summary="Journaled trades, filtered and paged, newest entry first")
async def journal(
    ctx: Ctx,
    symbol: Annotated[list[str] | None, Query(description="instrument(s); default all")] = None,
    start: Start = None,
    end: End = None,
    pattern: Annotated[
        Literal["absorption", "initiative", "sweep", "exhaustion", "divergence"] | None,
        Query(description="only trades whose entry signals include this pattern"),
    ] = None,
    grade: Annotated[list[Literal["A+", "A", "B", "C"]] | None, Query()] = None,
    closed: bool | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    symbols = (
        [ctx.instrument(s).symbol for s in symbol] if symbol else [i.symbol for i in ctx.served]
    )
    ids = await queries.pattern_signal_ids(ctx, symbols, pattern) if pattern else None
    q = queries.journal_query(ctx, symbols, start, end, list(grade or ()), ids, closed)
    total, rows = await ctx.db(ctx.history.trades, q, (page - 1) * page_size, page_size)
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": (total + page_size - 1) // page_size,
        "trades": [queries.journal_view(r) for r in rows],
    }


@router.get("/api/performance", summary="Win rate, expectancy in R, R distribution, equity curve")
async def performance(
    ctx: Ctx,
    symbol: Annotated[list[str] | None, Query()] = None,
    start: Start = None,
    end: End = None,
    grade: Annotated[list[Literal["A+", "A", "B", "C"]] | None, Query()] = None,
    bucket_r: Annotated[float, Query(gt=0, le=10)] = 0.5,
) -> dict[str, Any]:
    symbols = (
        [ctx.instrument(s).symbol for s in symbol] if symbol else [i.symbol for i in ctx.served]
    )
    q = queries.journal_query(ctx, symbols, start, end, list(grade or ()), None, True)
    trades = await ctx.db(ctx.history.closed_trades, q)
    return views.finite(perf(trades, bucket_r))
