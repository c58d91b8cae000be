"""Session CVD (issue 8 §2.2): only in-session trades count, it resets at the session open
(NinjaTrader's convention), out-of-hours flow stays in ``cvd_total``, and a composed bar reports
the session CVD as of its own last in-session trade. The reference is a plain loop over the trades
with the session hours written out here (New York 09:30-16:00, Monday to Friday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from of_analytics.bars import BarBuilder
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, Heartbeat, Side, Trade

S = 1_000_000_000
NY = ZoneInfo("America/New_York")


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


def tr(ts: int, size: float, side: Side) -> Trade:
    return Trade(ts, ts, 2150.0, size, side, f"{ts}-{size}")


def _ny(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / S, NY)


def _in_cash_session(ts: int) -> bool:
    local = _ny(ts)
    return local.weekday() < 5 and time(9, 30) <= local.time() < time(16, 0)


def reference(trades: list[Trade], bars: list[Bar]) -> list[tuple[float, float]]:
    """(session cvd, total cvd) as of each bar's close: the session value resets at the first
    in-session trade of a new local date and is held through out-of-hours trades."""
    out = []
    for bar in bars:
        session_day: date | None = None
        cvd = total = 0.0
        for t in trades:
            if t.ts_event >= bar.close_ts:
                break
            d = t.size if t.side is Side.BUY else -t.size
            total += d
            if _in_cash_session(t.ts_event):
                if _ny(t.ts_event).date() != session_day:
                    session_day, cvd = _ny(t.ts_event).date(), 0.0
                cvd += d
        out.append((cvd, total))
    return out


def _run(symbol: str, trades: list[Trade], end: int) -> list[Bar]:
    b = BarBuilder.for_instrument(load_registry().get(symbol))
    state = b.initial()
    out = b.on_trades(state, trades)
    out += b.step(state, Heartbeat(end, 0, "hb"))
    return out


def test_monday_bar_ignores_friday_evening_and_saturday_prints() -> None:
    trades = [
        tr(utc("2024-03-08T15:00:00"), 10.0, Side.BUY),  # Friday 10:00 EST, in session
        tr(utc("2024-03-08T22:00:00"), 300.0, Side.SELL),  # Friday evening
        tr(utc("2024-03-09T10:00:00"), 400.0, Side.SELL),  # Saturday
        tr(utc("2024-03-11T13:00:00"), 7.0, Side.BUY),  # Monday 09:00 EDT, before the open
        tr(utc("2024-03-11T13:30:10"), 3.0, Side.BUY),  # the 09:30 bar: delta +2
        tr(utc("2024-03-11T13:30:20"), 1.0, Side.SELL),
        tr(utc("2024-03-11T13:31:05"), 6.0, Side.BUY),  # the 09:31 bar: delta +5
        tr(utc("2024-03-11T13:31:30"), 1.0, Side.SELL),
    ]
    bars = _run("XAUUSDT", trades, utc("2024-03-12T00:00:00"))
    ones = [b for b in bars if b.timeframe == "1m"]
    assert [(b.cvd, b.cvd_total) for b in ones] == reference(trades, ones)
    monday = next(b for b in ones if b.open_ts == utc("2024-03-11T13:31:00"))
    assert monday.delta == 5.0
    assert (monday.cvd, monday.cvd_total) == (7.0, 10.0 - 700.0 + 7.0 + 2.0 + 5.0)
    composed = [b for b in bars if b.timeframe != "1m"]
    assert [(b.cvd, b.cvd_total) for b in composed] == reference(trades, composed)


def test_friday_daily_bar_reports_its_last_in_session_trade() -> None:
    trades = [
        tr(utc("2024-03-08T15:00:00"), 4.0, Side.BUY),  # Friday, in session
        tr(utc("2024-03-08T20:59:00"), 1.0, Side.SELL),  # the last in-session minute
        tr(utc("2024-03-08T21:30:00"), 50.0, Side.SELL),  # after hours
    ]
    bars = _run("AAPL", trades, utc("2024-03-12T00:00:00"))
    [day] = [b for b in bars if b.timeframe == "1D"]
    assert (day.cvd, day.cvd_total) == (3.0, -47.0)
    assert [(b.cvd, b.cvd_total) for b in bars] == reference(trades, bars)
