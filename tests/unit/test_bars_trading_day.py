"""1D and 4h bars align to the instrument's trading day (issue 8 §2.9): FX and the CME-traded
markets roll at 17:00 New York, stocks at New York midnight, crypto at UTC midnight. The reference
bounds are computed here with zoneinfo, independently of ofcommon.tradingday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from of_analytics.bars import BarBuilder
from ofcommon.instruments import RegistryConfigError, load_registry
from ofcommon.messages import Bar, Heartbeat, Side, Trade

S = 1_000_000_000
H = 3600 * S
NY = ZoneInfo("America/New_York")


def ns(d: datetime) -> int:
    return int(d.timestamp()) * S


def utc(text: str) -> int:
    return ns(datetime.fromisoformat(text).replace(tzinfo=UTC))


def ref_day(ts: int, tz: ZoneInfo, hour: int) -> tuple[int, int]:
    """The local day [hour:00, next day hour:00) containing ``ts``, by plain wall-clock logic."""
    local = datetime.fromtimestamp(ts / S, tz)
    start = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if local < start:
        start -= timedelta(days=1)
    start = start.replace(tzinfo=tz)  # re-resolve the offset of that wall time
    end = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    return ns(start), ns(end)


def _bars(symbol: str, stamps: list[int]) -> list[Bar]:
    b = BarBuilder.for_instrument(load_registry().get(symbol))
    state = b.initial()
    out: list[Bar] = []
    for i, ts in enumerate(stamps):
        out += b.on_trade(state, Trade(ts, ts, 1.1, 1.0, Side.BUY, f"t{i}"))
    out += b.step(state, Heartbeat(stamps[-1] + 60 * H, 0, "hb"))
    return out


def _spans(bars: list[Bar], tf: str) -> list[tuple[int, int]]:
    return [(b.open_ts, b.close_ts) for b in bars if b.timeframe == tf]


def test_fx_day_rolls_at_five_pm_new_york() -> None:
    # 16:30 and 17:30 EST on Tuesday 2024-03-05: two trading days, not one UTC day.
    stamps = [utc("2024-03-05T21:30:00"), utc("2024-03-05T22:30:00")]
    days = _spans(_bars("EURUSD", stamps), "1D")
    assert days == [
        (utc("2024-03-04T22:00:00"), utc("2024-03-05T22:00:00")),
        ref_day(stamps[1], NY, 17),
    ]
    assert days == [ref_day(t, NY, 17) for t in stamps]


def test_the_roll_follows_daylight_saving_and_a_dst_day_is_23_hours() -> None:
    summer = utc("2024-07-10T20:59:00")  # 16:59 EDT: the day rolls at 21:00 UTC in summer
    stamps = [summer, utc("2024-07-10T21:00:00"), utc("2024-03-10T12:00:00")]
    days = _spans(_bars("USOIL", sorted(stamps)), "1D")
    assert days == sorted(ref_day(t, NY, 17) for t in stamps)
    dst = next(d for d in days if d[0] <= utc("2024-03-10T12:00:00") < d[1])
    assert dst[1] - dst[0] == 23 * H


def test_fx_4h_bars_start_at_the_roll() -> None:
    stamps = [utc("2024-03-05T22:10:00"), utc("2024-03-06T01:59:00"), utc("2024-03-06T02:00:00")]
    fours = _spans(_bars("GBPUSD", stamps), "4h")
    assert fours == [
        (utc("2024-03-05T22:00:00"), utc("2024-03-06T02:00:00")),
        (utc("2024-03-06T02:00:00"), utc("2024-03-06T06:00:00")),
    ]


@pytest.mark.parametrize(
    ("symbol", "tz", "hour"),
    [("AAPL", NY, 0), ("BTCUSDT", ZoneInfo("UTC"), 0), ("DAX40", ZoneInfo("Europe/London"), 0)],
)
def test_other_markets_roll_at_their_local_midnight(symbol: str, tz: ZoneInfo, hour: int) -> None:
    stamps = [utc("2024-07-10T03:30:00"), utc("2024-07-10T23:30:00")]
    assert _spans(_bars(symbol, stamps), "1D") == sorted({ref_day(t, tz, hour) for t in stamps})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 400 * 24 * 60), min_size=1, max_size=30))
def test_every_minute_lands_in_its_trading_day_and_4h_bars_tile_it(minutes: list[int]) -> None:
    base = utc("2024-01-01T00:00:00")
    stamps = sorted(base + m * 60 * S for m in set(minutes))
    bars = _bars("EURUSD", stamps)
    days = _spans(bars, "1D")
    assert days == sorted({ref_day(t, NY, 17) for t in stamps})
    for start, end in _spans(bars, "4h"):
        day = ref_day(start, NY, 17)
        assert (start - day[0]) % (4 * H) == 0
        assert end == min(start + 4 * H, day[1])


def test_trading_day_is_overridable_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "instruments.toml"
    path.write_text('[instruments.BTCUSDT]\ntrading_day = "NY_1700"\n')
    btc = load_registry(path).get("BTCUSDT")
    assert (btc.day_spec.tz, btc.day_spec.hour) == ("America/New_York", 17)
    path.write_text('[instruments.BTCUSDT]\ntrading_day = "MARS"\n')
    with pytest.raises(RegistryConfigError, match="trading_day"):
        load_registry(path)


def test_the_fall_back_day_is_25_hours_and_one_bar() -> None:
    # 2024-11-03 the US falls back: the day that rolls Saturday 17:00 EDT (21:00 UTC) ends Sunday
    # 17:00 EST (22:00 UTC). A print at 21:30 UTC Sunday belongs to it, not to a bar of its own.
    stamps = [utc("2024-11-02T21:30:00"), utc("2024-11-03T21:30:00")]
    days = _spans(_bars("EURUSD", stamps), "1D")
    assert days == [(utc("2024-11-02T21:00:00"), utc("2024-11-03T22:00:00"))]
    assert days == sorted({ref_day(t, NY, 17) for t in stamps})
