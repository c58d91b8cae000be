"""Broker server time → UTC: fixed offsets, zones with DST, shifted zones, offset detection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings, strategies as st

from of_feed_mt5.eventclock import EventClock
from of_feed_mt5.servertime import ClockSpecError, ServerClock, detect_offset_minutes


def ms(text: str) -> int:
    """'2024-07-01 12:00' read as a wall time written as an epoch (how MT5 stamps ticks)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_fixed_offset_both_ways() -> None:
    clock = ServerClock.parse("+120")
    assert clock.spec == "+120"
    assert clock.to_utc_ms(ms("2024-07-01 12:00")) == ms("2024-07-01 10:00")
    assert clock.to_server_ms(ms("2024-07-01 10:00")) == ms("2024-07-01 12:00")
    assert ServerClock.parse("-300").to_utc_ms(ms("2024-01-01 00:00")) == ms("2024-01-01 05:00")
    assert ServerClock.parse("0").spec == "+0"


def test_eet_follows_eu_summer_time() -> None:
    clock = ServerClock.parse("EET")
    assert not clock.is_fixed
    assert clock.to_utc_ms(ms("2024-01-15 12:00")) == ms("2024-01-15 10:00")  # UTC+2
    assert clock.to_utc_ms(ms("2024-07-15 12:00")) == ms("2024-07-15 09:00")  # UTC+3
    assert clock.to_server_ms(ms("2024-07-15 09:00")) == ms("2024-07-15 12:00")


def test_new_york_plus_seven_follows_us_dst_not_eu_dst() -> None:
    """The common broker clock: 17:00 New York = 00:00 server, all year."""
    ny7 = ServerClock.parse("America/New_York+7")
    eet = ServerClock.parse("EET")
    # 2024-03-20: the US is on summer time (since 10 March), Europe not yet (31 March).
    assert ny7.to_utc_ms(ms("2024-03-20 12:00")) == ms("2024-03-20 09:00")
    assert eet.to_utc_ms(ms("2024-03-20 12:00")) == ms("2024-03-20 10:00")
    assert ny7.to_utc_ms(ms("2024-12-02 00:00")) == ms("2024-12-01 22:00")  # NY 17:00
    assert ny7.to_utc_ms(ms("2024-07-02 00:00")) == ms("2024-07-01 21:00")  # NY 17:00 EDT


def test_the_repeated_hour_at_the_end_of_summer_time_reads_as_the_first_pass() -> None:
    clock = ServerClock.parse("EET")
    # 2024-10-27 04:00 EEST -> 03:00 EET: server 03:30 happens twice; we take the EEST one.
    assert clock.to_utc_ms(ms("2024-10-27 03:30")) == ms("2024-10-27 00:30")
    assert clock.to_utc_ms(ms("2024-10-27 04:30")) == ms("2024-10-27 02:30")


@settings(max_examples=300, deadline=None)
@given(
    spec=st.sampled_from(["+120", "-300", "EET", "Europe/London", "America/New_York+7"]),
    utc=st.integers(ms("2015-01-01 00:00"), ms("2035-01-01 00:00")),
)
def test_server_time_round_trips(spec: str, utc: int) -> None:
    clock = ServerClock.parse(spec)
    server = clock.to_server_ms(utc)
    back = clock.to_utc_ms(server)
    # Only the repeated hour at the end of summer time is ambiguous (read as the first pass).
    assert back == utc or back == utc - 3_600_000


@pytest.mark.parametrize("bad", ["", "Mars/Base", "+2000", "EET+15", "../etc/passwd", "GMT+x"])
def test_bad_clock_specs_are_refused(bad: str) -> None:
    with pytest.raises(ClockSpecError):
        ServerClock.parse(bad)


def test_offset_detection_rounds_to_a_quarter_hour() -> None:
    wall = ms("2024-07-01 10:00")
    assert detect_offset_minutes(wall + 3 * 3_600_000 - 800, wall) == 180
    assert detect_offset_minutes(wall - 5 * 3_600_000 + 400, wall) == -300
    assert detect_offset_minutes(wall + 345 * 60_000 - 30_000, wall) == 345  # Nepal: +5:45


def test_offset_detection_refuses_stale_quotes_and_absurd_offsets() -> None:
    wall = ms("2024-07-01 10:00")
    assert detect_offset_minutes(wall + 2 * 3_600_000 - 6 * 60_000, wall) is None  # 6 min old
    assert detect_offset_minutes(wall - 2 * 86_400_000, wall) is None  # Friday's close
    assert detect_offset_minutes(wall + 20 * 3_600_000, wall) is None


def test_event_clock_carries_broker_time_forward_held_back_by_the_slack() -> None:
    clock = EventClock(slack_ns=1_000)
    assert clock.now(5) is None
    clock.observe(event_ns=100_000, wall_ns=50_000)
    assert clock.now(50_500) == 100_000  # within the slack: no advance
    assert clock.now(53_000) == 102_000
    clock.observe(event_ns=90_000, wall_ns=53_500)  # an older event does not move it back
    assert clock.now(53_500) == 102_500
    clock.observe(event_ns=101_000, wall_ns=60_000)
    assert clock.now(60_000) == 102_500  # never backwards, even after a later real event
    assert clock.now(70_000) == 101_000 + 9_000
