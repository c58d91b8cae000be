"""A hand-built BTCUSDT trade for the alerts tests: 1m bars with footprints, the day's bias, the
patterns behind the trade and its events (entry, break-even, trail, exit warning, exit), written
to the streams in event-time order as the aggregator would have.

Every number is chosen here in plain arithmetic, so the tests can check the alert texts against
it without the service's own helpers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from ofcommon import codec, keys
from ofcommon.messages import (
    Bar,
    Bias,
    Direction,
    FootprintRow,
    KeyLevel,
    Message,
    PatternSignal,
    TradeEvent,
)

SYMBOL = "BTCUSDT"
TICK = 0.1
ROW = 2.0  # BTCUSDT's footprint row (row_ticks × tick)
S = 1_000_000_000
MIN = 60 * S
T0 = 1_709_649_000 * S  # 2024-03-05T14:30:00Z
N_BARS = 45

ENTRY, STOP, TARGET = 64_012.4, 63_978.0, 64_090.0
BE_PRICE = 64_040.0
TRAIL_STOP, TRAIL_PRICE = 64_031.0, 64_060.2
WARN_PRICE = 64_071.3
EXIT_PRICE = TARGET
RISK = ENTRY - STOP  # 34.4
PNL = EXIT_PRICE - ENTRY  # 77.6


def _bar(i: int, o: float, c: float, rng: random.Random) -> Bar:
    hi = max(o, c) + rng.choice([0.0, 2.0, 4.0])
    lo = min(o, c) - rng.choice([0.0, 2.0, 4.0])
    rows: list[FootprintRow] = []
    price = lo - lo % ROW
    while price <= hi:
        bid, ask = rng.randint(1, 30) / 10, rng.randint(1, 30) / 10
        rows.append(FootprintRow(round(price, 1), bid, ask, 3))
        price += ROW
    buy = sum(r.ask_volume for r in rows)
    sell = sum(r.bid_volume for r in rows)
    return Bar(
        timeframe="1m",
        open_ts=T0 + i * MIN,
        close_ts=T0 + (i + 1) * MIN,
        open=o,
        high=hi,
        low=lo,
        close=c,
        volume=round(buy + sell, 6),
        buy_volume=buy,
        sell_volume=sell,
        delta=round(buy - sell, 6),
        delta_min=-sell,
        delta_max=buy,
        trades=3 * len(rows),
        vwap=(o + c) / 2,
        poc=rows[len(rows) // 2].price,
        footprint=rows,
        final=True,
        rev=1,
    )


def bars() -> list[Bar]:
    """The bars of the hour: drifting down to the VAL by bar 29, then up to the target."""
    rng = random.Random(15)
    out: list[Bar] = []
    price = 64_060.0
    for i in range(N_BARS):
        if i < 29:
            close = price + rng.choice([-6.0, -4.0, -2.0, 0.0, 2.0])
        elif i == 29:
            close = ENTRY
        else:
            close = price + rng.choice([-2.0, 2.0, 4.0, 6.0])
        out.append(_bar(i, round(price, 1), round(close, 1), rng))
        price = close
    return out


BIAS = Bias(
    session_id="2024-03-04",
    ts_event=T0 + 25 * MIN,  # the session that closed at 14:55
    bias=Direction.LONG,
    shape="p_shape",
    levels=[
        KeyLevel("vah", 64_090.0, 50, True, Direction.SHORT),
        KeyLevel("poc", 64_040.0, 30, True, Direction.SHORT),
        KeyLevel("val", 64_010.0, 50, True, Direction.LONG),
        KeyLevel("lvn", 63_990.0, 40, True, Direction.LONG),
    ],
    confidence=62.5,
    poc=64_040.0,
    vah=64_090.0,
    val=64_010.0,
    warnings=["vah_rejection"],
    merged_val=64_000.0,
    merged_vah=64_096.0,
)
ABSORPTION = PatternSignal(
    signal_id="BTCUSDT-absorption-1",
    ts_event=T0 + 30 * MIN,
    pattern="absorption",
    direction=Direction.LONG,
    price=64_010.0,
    strength=78.0,
    details={"method": "level", "attempts": 4, "volume": 56.5},
)
INITIATIVE = PatternSignal(
    signal_id="BTCUSDT-initiative-1",
    ts_event=T0 + 34 * MIN,
    pattern="initiative",
    direction=Direction.LONG,
    price=BE_PRICE,
    strength=61.0,
)
EXHAUSTION = PatternSignal(
    signal_id="BTCUSDT-exhaustion-1",
    ts_event=T0 + 41 * MIN,
    pattern="exhaustion",
    direction=Direction.SHORT,
    price=64_074.0,
    strength=55.0,
    details={"volume_decline": 0.42, "delta_kept": 0.3},
)

_TRADE = {
    "trade_id": "BTCUSDT-1709650680000000000",
    "direction": Direction.LONG,
    "target": TARGET,
    "score": 72.4,
    "grade": "A",
    "level_kind": "val",
    "level_price": 64_010.0,
    "entry_ts": T0 + 30 * MIN,
    "entry_price": ENTRY,
}
EVENTS = [
    TradeEvent(
        event_id="BTCUSDT-7",
        ts_event=T0 + 30 * MIN,
        kind="entry",
        price=ENTRY,
        stop=STOP,
        reason="absorption",
        signals=[ABSORPTION.signal_id],
        **_TRADE,
    ),
    TradeEvent(
        event_id="BTCUSDT-8",
        ts_event=T0 + 34 * MIN,
        kind="breakeven",
        price=BE_PRICE,
        stop=ENTRY,
        reason="initiative",
        signals=[INITIATIVE.signal_id],
        **_TRADE,
    ),
    TradeEvent(
        event_id="BTCUSDT-9",
        ts_event=T0 + 38 * MIN,
        kind="trail",
        price=TRAIL_PRICE,
        stop=TRAIL_STOP,
        reason="initiative",
        **_TRADE,
    ),
    TradeEvent(
        event_id="BTCUSDT-10",
        ts_event=T0 + 41 * MIN,
        kind="exit_warning",
        price=WARN_PRICE,
        stop=TRAIL_STOP,
        reason="exhaustion",
        signals=[EXHAUSTION.signal_id],
        **_TRADE,
    ),
    TradeEvent(
        event_id="BTCUSDT-11",
        ts_event=T0 + 44 * MIN,
        kind="exit",
        price=EXIT_PRICE,
        stop=TRAIL_STOP,
        reason="take_profit",
        pnl_ticks=round(PNL / TICK, 6),
        r_multiple=round(PNL / RISK, 6),
        mae_ticks=-21.0,
        mfe_ticks=round(PNL / TICK, 6),
        **_TRADE,
    ),
]


@dataclass
class Written:
    ids: dict[str, str] = field(default_factory=dict)  # event key -> entry id


def timeline() -> list[tuple[str, int, Message]]:
    """(stream kind, event time, message) in the order the pipeline writes them."""
    items: list[tuple[str, int, Message]] = [("bias", BIAS.ts_event, BIAS)]
    items += [("bars", b.close_ts, b) for b in bars()]
    for sig in (ABSORPTION, INITIATIVE, EXHAUSTION):
        items.append(("patterns", sig.ts_event, sig))
    items += [("tradeevents", ev.ts_event, ev) for ev in EVENTS]
    order = {"bias": 0, "bars": 1, "patterns": 2, "tradeevents": 3}
    return sorted(items, key=lambda it: (it[1], order[it[0]]))


async def publish(
    redis: aioredis.Redis, *, partials: int = 3, kinds: frozenset[str] | None = None
) -> Written:
    """Write the whole timeline with automatic IDs; ``partials`` non-final copies of each bar go
    before its close (they must never reach a chart). Returns the entry IDs of the alerts."""
    out = Written()
    for kind, _, msg in timeline():
        stream = keys.stream(SYMBOL, kind)
        if isinstance(msg, Bar):
            for k in range(partials):
                partial = Bar(
                    **{
                        f: getattr(msg, f)
                        for f in msg.__struct_fields__
                        if f not in ("final", "rev", "close")
                    },
                    close=msg.close + 50.0,  # a partial far off: visible if it leaked in
                    final=False,
                    rev=0,
                )
                await redis.xadd(stream, {codec.FIELD: codec.encode(partial)})
                del k
        if kinds is not None and kind not in kinds and kind in ("bias", "tradeevents"):
            continue
        entry_id = await redis.xadd(stream, {codec.FIELD: codec.encode(msg)})
        if isinstance(msg, TradeEvent):
            out.ids[msg.event_id] = entry_id.decode()
        elif isinstance(msg, Bias):
            out.ids[f"bias-{msg.session_id}"] = entry_id.decode()
    return out
