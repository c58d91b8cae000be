"""Alert texts, message parts, filters, error verdicts and settings of the alerts service (pure).

Expected values are worked out here from the scenario's numbers, not with the service's helpers.
"""

from __future__ import annotations

import httpx
import msgspec
import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from tests.support import alert_market as m

from of_alerts.alert import Alert, Context
from of_alerts.bot import verdict
from of_alerts.filters import Filters, skip_reason
from of_alerts.kinds import DEFAULT_TYPES, alert_type
from of_alerts.parts import CAPTION_MAX, split, tg_len
from of_alerts.settings import AlertsSettings
from of_alerts.texts import decimals, price, text
from ofcommon.messages import Direction, KeyLevel, TradeEvent
from ofcommon.settings import SettingsError, load_settings

ENTRY, BE, TRAIL, WARN, EXIT = m.EVENTS


def ctx(**kw: object) -> Context:
    return Context(tick_size=m.TICK, **kw)


def alert(msg: TradeEvent, c: Context | None = None) -> Alert:
    kind = alert_type(msg)
    assert kind is not None
    return Alert(type=kind, symbol=m.SYMBOL, key=msg.event_id, msg=msg, context=c or ctx())


@pytest.mark.parametrize(
    ("tick", "places", "value", "shown"),
    [
        (0.1, 1, 64_012.4, "64,012.4"),
        (0.00001, 5, 1.08543, "1.08543"),  # the seed printed 1.09
        (0.25, 2, 4_800.25, "4,800.25"),
        (1.0, 0, 38_500.0, "38,500"),
        (0.001, 3, 151.123, "151.123"),
    ],
)
def test_prices_keep_the_tick_precision(tick: float, places: int, value: float, shown: str) -> None:
    assert decimals(tick) == places
    assert price(value, tick) == shown


def test_entry_text_has_direction_score_pattern_bias_and_levels() -> None:
    bar = m.bars()[29]
    out = text(
        alert(ENTRY, ctx(bars=(bar,), bias=m.BIAS, patterns={m.ABSORPTION.signal_id: m.ABSORPTION}))
    )
    lines = out.splitlines()
    assert lines[0] == "🎯 ENTRY SIGNAL · BTCUSDT"
    assert lines[1] == "🟢 LONG · grade A · score 72/100"
    risk_ticks = round((m.ENTRY - m.STOP) / m.TICK)  # 344
    reward_ticks = round((m.TARGET - m.ENTRY) / m.TICK)  # 776
    assert f"Risk {risk_ticks} ticks · reward {reward_ticks} ticks · R:R 1:2.26" in lines
    assert "Level: VAL @ 64,010.0" in lines
    assert lines[-1] == "2024-03-05 15:00:00 UTC · BTCUSDT-7"


def test_entry_without_context_still_reads() -> None:
    out = text(alert(ENTRY))
    assert "Pattern" not in out
    assert "Entry 64,012.4 · SL 63,978.0 · TP 64,090.0" in out


def test_short_trade_progress_counts_in_its_direction() -> None:
    short_entry = msgspec.structs.replace(
        ENTRY, direction=Direction.SHORT, price=100.0, stop=101.0, target=97.0
    )
    trail = msgspec.structs.replace(
        TRAIL, direction=Direction.SHORT, price=98.5, stop=99.5, entry_price=100.0, target=97.0
    )
    out = text(alert(trail, ctx(history=(short_entry,))))
    assert "🔴 SHORT" in out
    # stop 99.5 under a 100.0 short entry locks in 0.5 = 5 ticks = 0.5 R (risk 1.0)
    assert "Locked in +5 ticks (+0.50 R) · trail #1" in out
    assert "open +15 ticks (+1.50 R)" in out
    assert "New SL 99.5 (was 101.0)" in out


def test_exit_text_has_pnl_in_ticks_and_r() -> None:
    out = text(alert(EXIT))
    assert "🟢 LONG closed: take profit hit" in out
    assert f"P&L +{round(m.PNL / m.TICK)} ticks · +{m.PNL / m.RISK:.2f} R achieved" in out
    losing = msgspec.structs.replace(EXIT, reason="stop_loss", pnl_ticks=-344.0, r_multiple=-1.0)
    assert "P&L -344 ticks · -1.00 R achieved" in text(alert(losing))


def test_long_bias_text_is_split_after_the_photo() -> None:
    many = [KeyLevel("lvn", 60_000.0 + i * 10, 40, True, Direction.LONG) for i in range(40)]
    bias = msgspec.structs.replace(m.BIAS, levels=many)
    a = Alert(type="bias", symbol=m.SYMBOL, key="bias-x", msg=bias, context=ctx())
    body = text(a)
    assert "… 28 more" in body  # 12 of the 40 levels listed
    photo, rest = split(body + "\n" + "x" * 1000, b"png")
    assert (photo.photo, rest.photo) == (b"png", None)
    assert photo.text == "🧭 DAILY BIAS · BTCUSDT"
    assert rest.text.startswith(body)
    (single,) = split(body[:CAPTION_MAX], b"png")
    assert single.text == body[:CAPTION_MAX]


def test_caption_length_counts_utf16_units() -> None:
    assert tg_len("🎯") == 2  # an astral emoji is two UTF-16 code units, as Telegram counts
    text_ = "🎯" * 600  # 600 characters, 1200 units: too long for a caption
    parts = split(text_, b"png")
    assert len(parts) == 2


def test_filters() -> None:
    f = Filters(types=frozenset(DEFAULT_TYPES), min_grade_rank=2, max_age_ms=60_000)  # B
    assert skip_reason("entry", ENTRY, 0, f) is None
    assert skip_reason("entry", msgspec.structs.replace(ENTRY, grade="C"), 0, f) == "grade"
    assert skip_reason("entry", msgspec.structs.replace(ENTRY, grade="B"), 0, f) is None
    assert skip_reason("entry", ENTRY, 60_001, f) == "stale"
    assert skip_reason("bias", m.BIAS, 0, f) is None
    watch = msgspec.structs.replace(ENTRY, kind="watch")
    assert skip_reason(alert_type(watch), watch, 0, f) == "type"
    bias_event = msgspec.structs.replace(ENTRY, kind="bias")
    assert alert_type(bias_event) is None  # the Bias entry is the alert, not its echo
    assert skip_reason(None, bias_event, 0, f) == "not_an_alert"


def _network(cause: Exception | None) -> NetworkError:
    err = NetworkError("x")
    err.__cause__ = cause
    return err


def test_error_verdicts() -> None:
    request = httpx.Request("POST", "http://t")
    assert verdict(RetryAfter(3)) == "retry"
    assert verdict(BadRequest("Bad Request: chat not found")) == "permanent"
    assert verdict(Forbidden("Forbidden: bot was blocked by the user")) == "permanent"
    assert verdict(_network(httpx.ConnectError("refused", request=request))) == "retry"
    assert verdict(_network(None)) == "retry"  # an HTTP 5xx reply: Telegram did not act
    timed_out = TimedOut()
    timed_out.__cause__ = httpx.ReadTimeout("slow", request=request)
    assert verdict(timed_out) == "uncertain"  # the request may have been acted on
    assert verdict(_network(httpx.RemoteProtocolError("gone", request=request))) == "uncertain"


def test_settings_check_chats_and_types() -> None:
    ok = load_settings(AlertsSettings, {"OF_TELEGRAM_CHAT_ID": "123, -100200, @my_channel, 123"})
    assert ok.chat_ids() == ("123", "-100200", "@my_channel")
    with pytest.raises(SettingsError, match="OF_TELEGRAM_CHAT_ID: 'abc' is neither"):
        load_settings(AlertsSettings, {"OF_TELEGRAM_CHAT_ID": "abc"})
    with pytest.raises(SettingsError, match="OF_ALERTS_TYPES: unknown alert type 'entries'"):
        load_settings(AlertsSettings, {"OF_ALERTS_TYPES": "entries"})
    with pytest.raises(SettingsError, match="OF_ALERTS_MIN_GRADE"):
        load_settings(AlertsSettings, {"OF_ALERTS_MIN_GRADE": "D"})
