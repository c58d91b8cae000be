"""What each endpoint answers, from PostgreSQL history joined with the streams' latest state.

Shared by the REST routes and the WebSocket snapshots; every value comes from the pipeline.
"""

from __future__ import annotations

from typing import Any, Final

from of_analytics.profile import ProfileConfig, compute_stats, row_of
from of_api import views
from of_api.candles import compose, with_open_bar
from of_api.context import ApiContext
from of_api.history import JournalQuery
from of_api.markers import marker
from ofcommon.grid import tick_decimals
from ofcommon.instruments import Instrument
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
from ofcommon.timeframes import TIMEFRAMES

NS: Final = 1_000_000_000
MAX_1M: Final = 200_000  # 1m bars read for one answer at most (~139 days)
_FAR: Final = 2**62
STEP_NAMES: Final = (
    "Profile Framing",
    "Qualified Levels",
    "Price at Level",
    "Absorption Scan",
    "Entry Decision",
    "Trade Management",
)
_DONE: Final = frozenset({"active", "triggered", "completed"})


async def open_bar(ctx: ApiContext, symbol: str) -> Bar | None:
    """The newest 1m bar on the stream (the open one when it is a partial)."""
    found = await ctx.live.latest(
        symbol, "bars", Bar, where=lambda b: b.timeframe == "1m", max_scan=2000
    )
    return found[1] if found else None


async def latest_ts(ctx: ApiContext, symbol: str, partial: Bar | None) -> int | None:
    """The instrument's newest bar close: event time, the reference of ``range``."""
    stored = await ctx.db(ctx.history.last_bar_close, symbol)
    candidates = [t for t in (stored, partial.close_ts if partial else None) if t is not None]
    return max(candidates) if candidates else None


async def bars(
    ctx: ApiContext,
    inst: Instrument,
    tf: str,
    count: int,
    start: int | None,
    end: int | None,
    range_s: int,
) -> list[Bar]:
    """The last ``count`` ``tf`` bars in [start, end) (Unix s) or the last ``range_s`` seconds
    before the newest bar: stored closed 1m bars, the open one from the stream, composed."""
    symbol = inst.symbol
    partial = await open_bar(ctx, symbol)
    newest = await latest_ts(ctx, symbol, partial)
    if newest is None:
        return []
    start_ns = start * NS if start is not None else 0
    end_ns = end * NS if end is not None else _FAR
    if range_s > 0:
        start_ns = max(start_ns, newest - range_s * NS)
    per = TIMEFRAMES[tf] // TIMEFRAMES["1m"]
    limit = min(MAX_1M, (count + 1) * per)
    closed = await ctx.db(ctx.history.bars, symbol, start_ns, end_ns, limit)
    open_in = partial is not None and start_ns <= partial.open_ts < end_ns
    merged = with_open_bar(closed, partial if open_in else None)
    out = compose(merged, tf, inst.day_spec)
    if len(closed) >= limit and len(out) > 1:
        out = out[1:]  # the first bucket was cut by the limit
    return out[-count:]


async def delta(ctx: ApiContext, bar_list: list[Bar]) -> list[dict[str, Any]]:
    """Cumulative delta over the window (restarting at its start) beside each bar's delta."""
    total = 0.0
    out = []
    for b in bar_list:
        total += b.delta
        out.append(views.delta_point(b, total))
    return out


async def tape(ctx: ApiContext, symbol: str, count: int) -> list[dict[str, Any]]:
    trades = await ctx.live.recent(symbol, "trades", Trade, count)
    return [views.tick(t) for _, t in trades]


async def bias(ctx: ApiContext, symbol: str) -> dict[str, Any]:
    found = await ctx.live.latest(symbol, "bias", Bias, max_scan=1000)
    b = found[1] if found else await ctx.db(ctx.history.latest_bias, symbol)
    if b is None:
        return {
            "symbol": symbol,
            "direction": "neutral",
            "confidence": 0.0,
            "qualified_levels": [],
            "notes": "No profile data yet",
        }
    view = views.plain(b)
    view.pop("k", None)
    view["symbol"] = symbol
    view["direction"] = {1: "long", -1: "short"}.get(int(b.bias), "neutral")
    view["qualified_levels"] = [lv for lv in view["levels"] if lv.get("qualified")]
    return view


async def status(ctx: ApiContext, symbol: str) -> StrategyStatus | None:
    found = await ctx.live.latest(symbol, "status", StrategyStatus, max_scan=100)
    return found[1] if found else None


def status_view(symbol: str, st: StrategyStatus | None, b: dict[str, Any]) -> dict[str, Any]:
    if st is None:
        return {
            "symbol": symbol,
            "overall": "NO_DATA",
            "reason": "the aggregator has published no status for this instrument yet",
            "priority": 10,
            "steps": [
                {"step": i + 1, "name": n, "status": "inactive"} for i, n in enumerate(STEP_NAMES)
            ],
            "steps_done": 0,
            "steps_total": len(STEP_NAMES),
            "phase": "none",
            "current_price": None,
            "bias_direction": b["direction"],
            "bias_confidence": b.get("confidence", 0.0),
            "ts_event": None,
        }
    return {
        "symbol": symbol,
        "overall": st.status,
        "reason": f"phase {st.phase}"
        + (f", level {st.level_kind} @ {st.level_price}" if st.level_kind else ""),
        "priority": st.priority,
        "steps": [
            {"step": i + 1, "name": n, "status": s}
            for i, (n, s) in enumerate(zip(STEP_NAMES, st.steps, strict=False))
        ],
        "steps_done": sum(s in _DONE for s in st.steps),
        "steps_total": len(STEP_NAMES),
        "phase": st.phase,
        "trade_id": st.trade_id,
        "level_kind": st.level_kind,
        "level_price": st.level_price,
        "current_price": st.price or None,
        "bias_direction": b["direction"],
        "bias_confidence": b.get("confidence", 0.0),
        "ts_event": st.ts_event,
    }


async def strategy_status(ctx: ApiContext, symbol: str) -> dict[str, Any]:
    return status_view(symbol, await status(ctx, symbol), await bias(ctx, symbol))


async def scanner(ctx: ApiContext) -> list[dict[str, Any]]:
    rows = [await strategy_status(ctx, inst.symbol) for inst in ctx.served]
    keep = ("symbol", "overall", "reason", "priority", "steps_done", "steps_total")
    out = [
        {
            **{k: r[k] for k in keep},
            "bias_direction": r["bias_direction"],
            "bias_confidence": r["bias_confidence"],
            "current_price": r["current_price"],
        }
        for r in rows
    ]
    return sorted(out, key=lambda r: -int(r["priority"]))  # stable: ties keep symbol order


async def trade(ctx: ApiContext, symbol: str) -> dict[str, Any]:
    st = await status(ctx, symbol)
    if st is None or not st.trade_id or st.phase not in ("position_open", "break_even", "trailing"):
        return {"symbol": symbol, "phase": st.phase if st else "none", "trade": None}
    row = await ctx.db(ctx.history.trade, symbol, st.trade_id)
    return {"symbol": symbol, "phase": st.phase, "trade": journal_view(row) if row else None}


def journal_view(row: dict[str, Any]) -> dict[str, Any]:
    view = dict(row)
    view["direction"] = {1: "long", -1: "short"}.get(int(row["direction"]), "neutral")
    view["entry_time"] = row["entry_ts"] / NS
    view["exit_time"] = row["exit_ts"] / NS if row.get("exit_ts") is not None else None
    view["open"] = row.get("exit_ts") is None
    out: dict[str, Any] = views.finite(view)
    return out


async def signals(ctx: ApiContext, symbol: str, limit: int) -> list[dict[str, Any]]:
    """The aggregator's signals (its trade events, journaled in PostgreSQL), newest first."""
    rows = await ctx.db(ctx.history.events, symbol, limit)
    out = []
    for r in rows:
        v = dict(r)
        v["direction"] = {1: "long", -1: "short"}.get(int(r["direction"]), "neutral")
        v["time"] = r["ts_event"] / NS
        out.append(views.finite(v))
    return out


async def markers(ctx: ApiContext, symbol: str, limit: int, tf: str) -> list[dict[str, Any]]:
    period_s = TIMEFRAMES[tf] // NS
    pats = await ctx.live.recent(symbol, "patterns", PatternSignal, limit)
    events = await ctx.live.recent(symbol, "tradeevents", TradeEvent, limit)
    found = [marker(m, period_s) for _, m in pats] + [marker(e, period_s) for _, e in events]
    kept = sorted((m for m in found if m is not None), key=lambda m: (m["time"], m["text"]))
    return kept[-limit:]


def profile_view(p: ProfileUpdate) -> dict[str, Any]:
    v = views.plain(p)
    v.pop("k", None)
    v["rows"] = [{"price": pr, "volume": vol} for pr, vol in p.rows]
    v["volume_kind"] = "ticks" if int(p.volume_kind) == 1 else "volume"
    return v


async def profiles(ctx: ApiContext, symbol: str, scope: str, days: int) -> list[dict[str, Any]]:
    stored = await ctx.db(ctx.history.profiles, symbol, scope, days)
    want = (
        (lambda p: p.scope == "session")
        if scope == "session"
        else (lambda p: p.scope.startswith("composite"))
    )
    found = await ctx.live.latest(symbol, "profile", ProfileUpdate, where=want, max_scan=5000)
    out = list(stored)
    if found is not None:
        live = found[1]
        if not any(p.session_id == live.session_id for p in out):
            out.insert(0, live)
        else:  # the stream's copy is newer than or as new as the stored one
            out = [
                live if p.session_id == live.session_id and live.ts_event >= p.ts_event else p
                for p in out
            ]
    return [profile_view(p) for p in out[:days]]


def range_profile(inst: Instrument, bar_list: list[Bar], newest: int | None) -> dict[str, Any]:
    """The volume profile of ``bar_list``'s footprints on the instrument's profile rows, with
    the analytics stage's own POC / value-area / node rules."""
    vap: dict[int, float] = {}
    for b in bar_list:
        for r in b.footprint:
            row = row_of(r.price, inst.tick_size, inst.ticks_per_row)
            vap[row] = vap.get(row, 0.0) + r.bid_volume + r.ask_volume
    stats = compute_stats(
        vap, inst.row_size, tick_decimals(inst.tick_size), ProfileConfig.from_registry(inst.profile)
    )
    return views.finite(
        {
            "session_id": "range",
            "scope": "range",
            "from_ts": bar_list[0].open_ts if bar_list else None,
            "to_ts": newest,
            "poc": stats.poc,
            "vah": stats.vah,
            "val": stats.val,
            "volume": stats.volume,
            "shape": stats.shape,
            "poc_position_pct": stats.poc_pct,
            "hvn": list(stats.hvn),
            "lvn": list(stats.lvn),
            "rows": [{"price": p, "volume": v} for p, v in stats.rows],
            "final": False,
        }
    )


async def orderbook(ctx: ApiContext, symbol: str, levels: int) -> dict[str, Any]:
    view = ctx.hub.books[symbol].view(levels)
    found = await ctx.live.latest(symbol, "bookstats", BookStats, max_scan=1000)
    view["symbol"] = symbol
    view["stats"] = views.book_stats(found[1]) if found else None
    return view


async def microstructure(ctx: ApiContext, inst: Instrument) -> dict[str, Any]:
    symbol = inst.symbol
    bstats = await ctx.live.latest(symbol, "bookstats", BookStats, max_scan=1000)
    pats = await ctx.live.recent(symbol, "patterns", PatternSignal, 20)
    partial = await open_bar(ctx, symbol)
    st = await status(ctx, symbol)

    def last_of(kind: str) -> dict[str, Any] | None:
        for _, p in pats:
            if p.pattern == kind:
                v = views.plain(p)
                v.pop("k", None)
                return v
        return None

    return views.finite(
        {
            "symbol": symbol,
            "market_state": st.status if st else "NO_DATA",
            "session": {"name": inst.session},
            "book": views.book_stats(bstats[1]) if bstats else None,
            "delta": {
                "session_cvd": partial.cvd if partial else None,
                "cvd_total": partial.cvd_total if partial else None,
                "bar_delta": partial.delta if partial else None,
                "bar_open_ts": partial.open_ts if partial else None,
            },
            "absorption": last_of("absorption"),
            "initiative": last_of("initiative"),
            "sweep": last_of("sweep"),
            "exhaustion": last_of("exhaustion"),
            "divergence": last_of("divergence"),
            "patterns": [
                {
                    "type": p.pattern,
                    "direction": int(p.direction),
                    "price": p.price,
                    "strength": p.strength,
                    "ts_event": p.ts_event,
                }
                for _, p in pats
            ],
        }
    )


async def instruments(ctx: ApiContext) -> list[dict[str, Any]]:
    out = []
    for inst in ctx.served:
        partial = await open_bar(ctx, inst.symbol)
        st = await status(ctx, inst.symbol)
        trades_n = await ctx.live.length(inst.symbol, "trades")
        out.append(
            views.finite(
                {
                    "symbol": inst.symbol,
                    "group": inst.group,
                    "tick_size": inst.tick_size,
                    "row_size": inst.row_size,
                    "session": inst.session,
                    "venue": inst.feed_venue,
                    "price": ctx.hub.last_price.get(
                        inst.symbol, partial.close if partial else None
                    ),
                    "last_bar_ts": partial.open_ts if partial else None,
                    "cum_delta": partial.cvd if partial else None,
                    "trades_in_stream": trades_n,
                    "status": st.status if st else "NO_DATA",
                    "trade_phase": st.phase if st else "none",
                    "trade_direction": {1: "long", -1: "short"}.get(int(st.bias), "none")
                    if st
                    and st.trade_id
                    and st.phase in ("position_open", "break_even", "trailing")
                    else "none",
                }
            )
        )
    return out


def journal_query(
    ctx: ApiContext,
    symbols: list[str],
    start: int | None,
    end: int | None,
    grades: list[str],
    signal_ids: list[str] | None,
    closed: bool | None,
) -> JournalQuery:
    return JournalQuery(
        symbols=symbols,
        start_ns=start * NS if start is not None else None,
        end_ns=end * NS if end is not None else None,
        grades=grades,
        signal_ids=signal_ids,
        closed=closed,
    )


async def pattern_signal_ids(ctx: ApiContext, symbols: list[str], pattern: str) -> list[str]:
    """Ids of the ``pattern`` signals still on the instruments' patterns streams."""
    ids: list[str] = []
    for s in symbols:
        found = await ctx.live.recent(
            s,
            "patterns",
            PatternSignal,
            100_000,
            where=lambda p: p.pattern == pattern,
            max_scan=110_000,
        )
        ids.extend(p.signal_id for _, p in found)
    return ids
