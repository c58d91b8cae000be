"""Reading an alert's context from the instrument's streams, at or before the event: closed 1m
bars, the bias in force, the patterns the event names and the trade's earlier events.

Each read walks a stream backwards from the event's entry ID (outputs carry their input's
millisecond, so what is above it came later) in pages, within a bound; nothing is cached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from of_alerts.alert import Context
from ofcommon import codec, keys
from ofcommon.bus import Redis
from ofcommon.entry_ids import parse
from ofcommon.messages import Bar, Bias, Message, PatternSignal, TradeEvent

PAGE: Final = 1000
PARTIALS_PER_BAR: Final = 300  # a 1m bar's partials (4/s at most) and the composed closes
PATTERN_SCAN: Final = 5000
HISTORY_SCAN: Final = 5000
BIAS_SCAN: Final = 50


async def _backwards(redis: Redis, stream: str, top: str, limit: int) -> AsyncIterator[Message]:
    """Decoded messages of ``stream`` from ``top`` (inclusive, or exclusive with a leading
    ``(``) down, at most ``limit`` entries; what does not decode is passed over."""
    seen = 0
    while seen < limit:
        page = await redis.xrevrange(stream, max=top, min="-", count=min(PAGE, limit - seen))
        if not page:
            return
        seen += len(page)
        for _, fields in page:
            raw = (fields or {}).get(codec.FIELD)
            if not isinstance(raw, bytes):
                continue
            try:
                yield codec.decode(raw)
            except codec.DecodeError:
                continue
        last = page[-1][0]
        top = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        if len(page) < PAGE:
            return


async def bars(redis: Redis, symbol: str, top: str, until_ns: int, count: int) -> tuple[Bar, ...]:
    """The last ``count`` final 1m bars closed at or before ``until_ns``, oldest first."""
    if count <= 0:
        return ()
    found: dict[int, Bar] = {}
    stream = keys.stream(symbol, "bars")
    async for msg in _backwards(redis, stream, top, count * PARTIALS_PER_BAR + PAGE):
        if (
            isinstance(msg, Bar)
            and msg.final
            and msg.timeframe == "1m"
            and msg.close_ts <= until_ns
            and msg.open_ts not in found
        ):
            found[msg.open_ts] = msg
            if len(found) >= count:
                break
    return tuple(found[k] for k in sorted(found))


async def bias(redis: Redis, symbol: str, top: str, until_ns: int) -> Bias | None:
    async for msg in _backwards(redis, keys.stream(symbol, "bias"), top, BIAS_SCAN):
        if isinstance(msg, Bias) and msg.ts_event <= until_ns:
            return msg
    return None


async def patterns(redis: Redis, symbol: str, top: str, ids: list[str]) -> dict[str, PatternSignal]:
    wanted = set(ids)
    out: dict[str, PatternSignal] = {}
    if not wanted:
        return out
    async for msg in _backwards(redis, keys.stream(symbol, "patterns"), top, PATTERN_SCAN):
        if isinstance(msg, PatternSignal) and msg.signal_id in wanted:
            out[msg.signal_id] = msg
            if len(out) == len(wanted):
                break
    return out


async def history(
    redis: Redis, symbol: str, entry_id: str, trade_id: str
) -> tuple[TradeEvent, ...]:
    """The trade's events before entry ``entry_id``, oldest first, back to its entry."""
    out: list[TradeEvent] = []
    stream = keys.stream(symbol, "tradeevents")
    async for msg in _backwards(redis, stream, f"({entry_id}", HISTORY_SCAN):
        if isinstance(msg, TradeEvent) and msg.trade_id == trade_id:
            out.append(msg)
            if msg.kind == "entry":
                break
    return tuple(reversed(out))


async def context(
    redis: Redis, symbol: str, entry_id: str, msg: TradeEvent | Bias, *, tick: float, n_bars: int
) -> Context:
    """Everything the text and the chart of ``msg`` (entry ``entry_id``) need."""
    top = str(parse(entry_id).ms)  # everything written up to the event's own millisecond
    chart = await bars(redis, symbol, top, msg.ts_event, n_bars)
    if isinstance(msg, Bias):
        return Context(tick_size=tick, bars=chart, bias=msg)
    frame = await bias(redis, symbol, top, msg.ts_event)
    signals = await patterns(redis, symbol, top, msg.signals)
    past = (
        await history(redis, symbol, entry_id, msg.trade_id)
        if msg.kind in ("breakeven", "trail", "exit", "exit_warning")
        else ()
    )
    return Context(tick_size=tick, bars=chart, bias=frame, patterns=signals, history=past)
