"""Sessions: DST-correct bounds in exchange time, local-date ids, the containing-else-next rule.
Timestamps are int ns UTC; expected values are written as UTC wall times.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, strategies as st

from ofcommon.sessions import (
    SESSIONS,
    SessionSpec,
    bounds_for_date,
    get_session,
    in_session,
    session_bounds,
    session_date,
    session_id,
)

NY = SESSIONS["NY_CASH"]
LONDON = SESSIONS["LONDON"]
ASIAN = SESSIONS["ASIAN"]
FULL_DAY = SESSIONS["FULL_DAY"]


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC wall time -> ns since the epoch."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1_000_000_000


def test_the_four_seed_sessions_exist() -> None:
    assert set(SESSIONS) == {"NY_CASH", "LONDON", "ASIAN", "FULL_DAY"}
    assert {name: (s.tz, s.open, s.close) for name, s in SESSIONS.items()} == {
        "NY_CASH": ("America/New_York", "09:30", "16:00"),
        "LONDON": ("Europe/London", "08:00", "16:30"),
        "ASIAN": ("Asia/Tokyo", "09:00", "18:00"),
        "FULL_DAY": ("UTC", "00:00", "24:00"),
    }
    assert all(spec.name == name for name, spec in SESSIONS.items())


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        # US DST began Sunday 2024-03-10.
        ((2024, 3, 8), (2024, 3, 8, 14, 30), (2024, 3, 8, 21, 0)),
        ((2024, 3, 11), (2024, 3, 11, 13, 30), (2024, 3, 11, 20, 0)),
        # ... and ended Sunday 2024-11-03.
        ((2024, 11, 1), (2024, 11, 1, 13, 30), (2024, 11, 1, 20, 0)),
        ((2024, 11, 4), (2024, 11, 4, 14, 30), (2024, 11, 4, 21, 0)),
    ],
)
def test_ny_cash_follows_us_dst(
    day: tuple[int, int, int], start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    mid = ns(*day, 17, 0)
    assert session_bounds(NY, mid) == (ns(*start), ns(*end))
    assert bounds_for_date(NY, date(*day)) == (ns(*start), ns(*end))
    assert session_id(NY, mid) == date(*day).isoformat()
    assert in_session(NY, mid)


@pytest.mark.parametrize(
    ("day", "start_hour"),
    [
        # UK summer time began Sunday 2024-03-31 and ended Sunday 2024-10-27.
        ((2024, 3, 29), 8),
        ((2024, 4, 2), 7),
        ((2024, 10, 25), 7),
        ((2024, 10, 28), 8),
    ],
)
def test_london_follows_uk_dst(day: tuple[int, int, int], start_hour: int) -> None:
    start, end = bounds_for_date(LONDON, date(*day))
    assert start == ns(*day, start_hour, 0)
    assert end == ns(*day, start_hour + 8, 30)


def test_us_and_uk_dst_switch_on_different_weeks() -> None:
    # 2024-03-11..29: New York already on EDT, London still on GMT.
    assert bounds_for_date(NY, date(2024, 3, 18))[0] == ns(2024, 3, 18, 13, 30)
    assert bounds_for_date(LONDON, date(2024, 3, 18))[0] == ns(2024, 3, 18, 8, 0)


@pytest.mark.parametrize("day", [(2024, 1, 15), (2024, 7, 15)])
def test_asian_is_tokyo_time_without_dst(day: tuple[int, int, int]) -> None:
    assert bounds_for_date(ASIAN, date(*day)) == (ns(*day, 0, 0), ns(*day, 9, 0))


def test_session_id_is_the_exchange_local_date() -> None:
    # Sunday 23:30 UTC is Monday 08:30 in Tokyo: Monday's session, not yet open.
    ts = ns(2024, 3, 10, 23, 30)
    assert session_id(ASIAN, ts) == "2024-03-11"
    assert session_date(ASIAN, ts) == date(2024, 3, 11)
    assert not in_session(ASIAN, ts)
    assert in_session(ASIAN, ns(2024, 3, 11, 0, 30))


def test_before_the_open_belongs_to_the_same_day() -> None:
    ts = ns(2024, 3, 11, 12, 0)  # 08:00 New York
    assert session_id(NY, ts) == "2024-03-11"
    assert session_bounds(NY, ts) == (ns(2024, 3, 11, 13, 30), ns(2024, 3, 11, 20, 0))
    assert not in_session(NY, ts)


def test_after_the_close_belongs_to_the_next_session() -> None:
    ts = ns(2024, 3, 12, 1, 0)  # Monday 21:00 New York
    assert session_id(NY, ts) == "2024-03-12"
    assert not in_session(NY, ts)


@pytest.mark.parametrize(
    "ts",
    [
        ns(2024, 3, 8, 21, 0),  # Friday's close, exactly
        ns(2024, 3, 8, 23, 0),  # Friday evening
        ns(2024, 3, 9, 15, 0),  # Saturday
        ns(2024, 3, 10, 15, 0),  # Sunday
    ],
)
def test_weekend_maps_to_monday(ts: int) -> None:
    assert session_id(NY, ts) == "2024-03-11"
    assert not in_session(NY, ts)


def test_bounds_are_half_open_to_the_nanosecond() -> None:
    start, end = bounds_for_date(NY, date(2024, 3, 11))
    assert not in_session(NY, start - 1)
    assert in_session(NY, start)
    assert in_session(NY, end - 1)
    assert not in_session(NY, end)
    assert session_id(NY, end - 1) == "2024-03-11"
    assert session_id(NY, end) == "2024-03-12"


def test_full_day_is_the_utc_day_every_day() -> None:
    saturday = ns(2024, 3, 9, 23, 59)
    assert session_bounds(FULL_DAY, saturday) == (ns(2024, 3, 9), ns(2024, 3, 10))
    assert session_id(FULL_DAY, saturday) == "2024-03-09"
    assert in_session(FULL_DAY, saturday)
    assert in_session(FULL_DAY, ns(2024, 3, 10))
    assert session_id(FULL_DAY, ns(2024, 3, 10)) == "2024-03-10"


def test_no_session_on_a_weekend_date() -> None:
    with pytest.raises(ValueError, match="NY_CASH has no session on Saturday 2024-03-09"):
        bounds_for_date(NY, date(2024, 3, 9))


def test_get_session_accepts_the_seed_spelling() -> None:
    assert get_session("ny_cash") is NY
    assert get_session("FULL_DAY") is FULL_DAY
    with pytest.raises(KeyError, match="sessions: NY_CASH, LONDON, ASIAN, FULL_DAY"):
        get_session("tokyo")


def test_custom_session_and_hashable_spec() -> None:
    spec = SessionSpec("CME_RTH", "America/Chicago", "08:30", "15:15", (0, 1, 2, 3, 4))
    assert bounds_for_date(spec, date(2024, 3, 11)) == (
        ns(2024, 3, 11, 13, 30),
        ns(2024, 3, 11, 20, 15),
    )
    same = SessionSpec("CME_RTH", "America/Chicago", "08:30", "15:15", (0, 1, 2, 3, 4))
    assert len({spec, same}) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("X", "Mars/Olympus", "09:00", "10:00"), "unknown time zone 'Mars/Olympus'"),
        (("X", "UTC", "9:30", "16:00"), "open must be 'HH:MM'"),
        (("X", "UTC", "09:30", "24:30"), "close must be 'HH:MM'"),
        (("X", "UTC", "16:00", "09:30"), "open 16:00 must be before close 09:30"),
        (("X", "UTC", "24:00", "24:00"), "must be before close"),
        (("X", "UTC", "09:00", "10:00", ()), "days must be weekday numbers"),
        (("X", "UTC", "09:00", "10:00", (0, 7)), "days must be weekday numbers"),
        (("X", "UTC", "09:00", "10:00", (1, 1)), "repeat a weekday"),
    ],
)
def test_invalid_specs_are_rejected(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionSpec(*args)


# 2000-01-01 .. 2040-01-01, whole nanoseconds.
_TIMES = st.integers(min_value=946_684_800 * 10**9, max_value=2_208_988_800 * 10**9)


@given(ts=_TIMES, name=st.sampled_from(sorted(SESSIONS)))
def test_every_instant_has_one_session_containing_or_next(ts: int, name: str) -> None:
    spec = SESSIONS[name]
    start, end = session_bounds(spec, ts)
    assert start < end
    assert ts < end
    assert in_session(spec, ts) == (start <= ts)
    day = session_date(spec, ts)
    assert bounds_for_date(spec, day) == (start, end)
    assert session_bounds(spec, start) == (start, end)
    assert session_bounds(spec, end - 1) == (start, end)
    assert session_date(spec, end) > day


@given(a=_TIMES, b=_TIMES, name=st.sampled_from(sorted(SESSIONS)))
def test_session_dates_never_go_backwards(a: int, b: int, name: str) -> None:
    spec = SESSIONS[name]
    lo, hi = sorted((a, b))
    assert session_date(spec, lo) <= session_date(spec, hi)
