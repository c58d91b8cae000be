"""Render the example alerts of docs/alerts.md: texts to stdout, chart PNGs to docs/img/.

The bars are real: one hour of CME ES (ESH4, 2023-12-25 23:00-24:00 UTC) trades from the shared
data, folded by the analytics bar builder into 1-minute footprint bars. The frame and the trade
on them are made up for the pictures (derived from those bars) and labelled so in the docs.
Run: ``.venv/bin/python -m scripts.gen_alert_images`` (needs ../shared/data/real).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Final

from PIL import Image

from of_alerts.alert import Alert, Context
from of_alerts.snapshot import png
from of_alerts.texts import text
from of_analytics.bars import BarBuilder
from ofcommon.messages import (
    Bar,
    Bias,
    Direction,
    KeyLevel,
    PatternSignal,
    Side,
    Trade,
    TradeEvent,
)

ROOT: Final = Path(__file__).resolve().parents[1]
TRADES: Final = (
    ROOT.parent / "shared" / "data" / "real" / "cme" / "esh4_20231225_trades_derived.csv"
)
OUT: Final = ROOT / "docs" / "img"
SYMBOL: Final = "ESH4"
TICK: Final = 0.25
N_CHART: Final = 45


def real_bars() -> list[Bar]:
    builder = BarBuilder(TICK, TICK, composed=())
    state = builder.initial()
    out: list[Bar] = []
    with TRADES.open() as f:
        for n, row in enumerate(csv.DictReader(f)):
            side = Side.SELL if row["aggressor_side"] == "A" else Side.BUY
            ts = int(row["ts_event_ns"])
            trade = Trade(
                ts, int(row["ts_recv_ns"]), float(row["price"]), float(row["size"]), side, str(n)
            )
            out.extend(b for b in builder.step(state, trade) if b.final and b.timeframe == "1m")
    return out


def frame(bars: list[Bar]) -> Bias:
    """A made-up frame from the first bars' volume at price: POC and a 70 % value area."""
    volume: dict[float, float] = {}
    for b in bars:
        for r in b.footprint:
            volume[r.price] = volume.get(r.price, 0.0) + r.bid_volume + r.ask_volume
    prices = sorted(volume)
    poc = max(prices, key=lambda p: volume[p])
    lo = hi = prices.index(poc)
    total, inside = sum(volume.values()), volume[poc]
    while inside < 0.7 * total:
        down = volume[prices[lo - 1]] if lo > 0 else -1.0
        up = volume[prices[hi + 1]] if hi + 1 < len(prices) else -1.0
        if up >= down:
            hi += 1
            inside += up
        else:
            lo -= 1
            inside += down
    val, vah = prices[lo], prices[hi]
    return Bias(
        session_id="2023-12-25",
        ts_event=bars[-1].close_ts,
        bias=Direction.LONG,
        shape="p_shape",
        levels=[
            KeyLevel("vah", vah, 50, True, Direction.SHORT),
            KeyLevel("poc", poc, 30, True, Direction.LONG),
            KeyLevel("val", val, 50, True, Direction.LONG),
        ],
        confidence=58.0,
        poc=poc,
        vah=vah,
        val=val,
    )


def main() -> int:
    if not TRADES.is_file():
        print(f"real data not found at {TRADES}", file=sys.stderr)
        return 1
    bars = real_bars()
    bias = frame(bars[:20])
    # the entry: the lowest close after the frame, a long off it with the stop under its low
    i_entry = min(range(20, 40), key=lambda i: bars[i].close)
    eb = bars[i_entry]
    entry, stop = eb.close, min(eb.low, bias.val) - 2 * TICK
    risk = entry - stop
    target = max(bias.vah, entry + 4 * risk)

    def ts(i: int) -> int:
        return bars[i].close_ts

    trade = {
        "trade_id": f"{SYMBOL}-{eb.open_ts}",
        "direction": Direction.LONG,
        "target": target,
        "score": 71.0,
        "grade": "A",
        "level_kind": "val",
        "level_price": bias.val,
        "entry_ts": ts(i_entry),
        "entry_price": entry,
    }
    absorption = PatternSignal(
        f"{SYMBOL}-abs",
        ts(i_entry),
        "absorption",
        Direction.LONG,
        eb.low,
        74.0,
        details={"method": "level", "attempts": 3},
    )
    i_be = next(
        (i for i in range(i_entry + 1, len(bars)) if bars[i].close >= entry + 0.5 * risk),
        i_entry + 2,
    )
    initiative = PatternSignal(
        f"{SYMBOL}-ini", ts(i_be), "initiative", Direction.LONG, bars[i_be].close, 63.0
    )
    i_tr = min(i_be + 3, len(bars) - 5)
    trail_stop = max(bars[i_tr - 1].low, entry + TICK)
    i_w = min(i_tr + 3, len(bars) - 3)
    exhaustion = PatternSignal(
        f"{SYMBOL}-exh",
        ts(i_w),
        "exhaustion",
        Direction.SHORT,
        bars[i_w].high,
        52.0,
        details={"volume_decline": 0.38, "delta_kept": 0.25},
    )
    i_x = len(bars) - 1
    exit_price = bars[i_x].close
    events = [
        (
            "entry",
            TradeEvent(
                event_id=f"{SYMBOL}-1",
                ts_event=ts(i_entry),
                kind="entry",
                price=entry,
                stop=stop,
                signals=[absorption.signal_id],
                **trade,
            ),
        ),
        (
            "breakeven",
            TradeEvent(
                event_id=f"{SYMBOL}-2",
                ts_event=ts(i_be),
                kind="breakeven",
                price=bars[i_be].close,
                stop=entry,
                reason="initiative",
                signals=[initiative.signal_id],
                **trade,
            ),
        ),
        (
            "trail",
            TradeEvent(
                event_id=f"{SYMBOL}-3",
                ts_event=ts(i_tr),
                kind="trail",
                price=bars[i_tr].close,
                stop=trail_stop,
                reason="initiative",
                **trade,
            ),
        ),
        (
            "exit_warning",
            TradeEvent(
                event_id=f"{SYMBOL}-4",
                ts_event=ts(i_w),
                kind="exit_warning",
                price=bars[i_w].close,
                stop=trail_stop,
                reason="exhaustion",
                signals=[exhaustion.signal_id],
                **trade,
            ),
        ),
        (
            "exit",
            TradeEvent(
                event_id=f"{SYMBOL}-5",
                ts_event=ts(i_x),
                kind="exit",
                price=exit_price,
                stop=trail_stop,
                reason="session_end",
                pnl_ticks=round((exit_price - entry) / TICK, 6),
                r_multiple=round((exit_price - entry) / risk, 6),
                mae_ticks=-3.0,
                mfe_ticks=round((max(b.high for b in bars[i_entry:]) - entry) / TICK, 6),
                **trade,
            ),
        ),
    ]
    patterns = {p.signal_id: p for p in (absorption, initiative, exhaustion)}
    alerts = [
        Alert(
            type="bias",
            symbol=SYMBOL,
            key="bias-2023-12-25",
            msg=bias,
            context=Context(tick_size=TICK, bars=tuple(bars[:20][-N_CHART:]), bias=bias),
        )
    ]
    history: list[TradeEvent] = []
    for kind, ev in events:
        shown = tuple(b for b in bars if b.close_ts <= ev.ts_event)[-N_CHART:]
        ctx = Context(
            tick_size=TICK, bars=shown, bias=bias, patterns=patterns, history=tuple(history)
        )
        alerts.append(Alert(type=kind, symbol=SYMBOL, key=ev.event_id, msg=ev, context=ctx))
        history.append(ev)
    OUT.mkdir(parents=True, exist_ok=True)
    for a in alerts:
        data = png(a)
        assert data is not None
        img = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=48)
        path = OUT / f"alert-{a.type.replace('_', '-')}.png"
        img.save(path, optimize=True)
        print(f"### {a.type}  ({path.relative_to(ROOT)}, {path.stat().st_size // 1024} KB)\n")
        print("```\n" + text(a) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
