"""AnalyticsStore against a real PostgreSQL: exact round trips and the idempotent upsert rules.

Bars and profiles read back must equal the wire messages written, whatever the replay or race.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import create_engine, func, pool, select

from of_analytics.persist import AnalyticsStore
from ofcommon.db import migrate, to_sync_url
from ofcommon.messages import (
    Bar,
    BigPrint,
    FootprintRow,
    ImbalanceRow,
    ProfileUpdate,
    Side,
    SizeKind,
    StackedRun,
)
from ofcommon.tables import bars_1m, session_profiles

pytestmark = pytest.mark.postgres

MINUTE = 60_000_000_000
T0 = 1_700_000_040 * 1_000_000_000  # a minute boundary
SYM = "BTCUSDT"


@pytest.fixture
def store(database_url: str) -> Iterator[AnalyticsStore]:
    migrate(database_url)
    with AnalyticsStore(database_url) as s:
        yield s


def make_bar(i: int, *, rev: int = 3, final: bool = True, volume: float = 0.0) -> Bar:
    price = 37_000.1 + i * 0.1
    footprint = [
        FootprintRow(price, 0.1 + 0.2, 1e-7, 1),  # 0.30000000000000004: exact float bits
        FootprintRow(price + 0.1, 1e20, 0.0, 7),  # jsonb prints this one without a fraction
        FootprintRow(price + 0.2, 123_456_789.123_456_78, 2.5, 3 + i),
    ]
    vol = volume or sum(r.bid_volume + r.ask_volume for r in footprint)
    return Bar(
        timeframe="1m",
        open_ts=T0 + i * MINUTE,
        close_ts=T0 + (i + 1) * MINUTE,
        open=price,
        high=price + 0.2,
        low=price - 1 / 3,
        close=price + 0.1,
        volume=vol,
        buy_volume=vol / 3,
        sell_volume=vol - vol / 3,
        delta=-vol / 3,
        delta_min=-5e-324,  # the smallest subnormal survives too
        delta_max=1.7976931348623157e308,
        trades=11 + i,
        vwap=price + 1 / 7,
        poc=price + 0.1,
        footprint=footprint,
        final=final,
        rev=rev,
        delta_at_high=0.1 + 0.2,
        delta_at_low=-1e20,
        cvd=-1 / 3,
        cvd_total=1.7976931348623157e308,
        imbalances=[
            ImbalanceRow(price + 0.1, Side.BUY, 1 / 3 + 3),
            ImbalanceRow(price + 0.2, Side.SELL, math.inf),  # zero-counting preset: no bound
        ],
        stacked=[StackedRun(Side.SELL, price, price + 0.2, 3 + i)],
        unfinished_high=i % 2 == 0,
        unfinished_low=True,
        big_trades=[
            BigPrint(T0 + i * MINUTE + 1, price + 0.2, 123_456_789.123_456_78, Side.SELL),
            BigPrint(T0 + i * MINUTE + 999_999_999, price, 1e20, Side.BUY),
        ],
    )


def make_profile(
    session: int, *, final: bool, ts_event: int, poc: float = 100.25, scope: str = "session"
) -> ProfileUpdate:
    start = T0 + session * 1440 * MINUTE
    return ProfileUpdate(
        scope=scope,
        session_id=f"2023-11-{14 + session:02d}",
        session_start=start,
        session_end=start + 1440 * MINUTE,
        ts_event=ts_event,
        poc=poc,
        vah=poc + 0.1 + 0.2,
        val=poc - 1 / 3,
        volume=1234.5678,
        rows=[(poc - 0.25, 10.0), (poc, 0.1 + 0.2), (poc + 0.25, 1e20)],
        shape="P",
        final=final,
    )


def table_rows(url: str, table: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            pk = list(table.primary_key.columns)
            return [tuple(r) for r in conn.execute(select(table).order_by(*pk))]
    finally:
        engine.dispose()


def count(url: str, table: Any) -> int:
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def test_bars_round_trip_exactly(store: AnalyticsStore) -> None:
    bars = [make_bar(i) for i in range(5)]
    assert store.write_bars(SYM, bars) == 5
    back = store.bars_between(SYM, T0, T0 + 5 * MINUTE)
    assert back == bars
    assert [type(r.price) for b in back for r in b.footprint] == [float] * 15
    assert [type(p.price) for b in back for p in b.big_trades] == [float] * 10
    assert [type(r.side) for b in back for r in b.imbalances] == [Side] * 10
    # half-open range, other symbols invisible
    assert store.bars_between(SYM, T0 + MINUTE, T0 + 3 * MINUTE) == bars[1:3]
    assert store.bars_between("ETHUSDT", T0, T0 + 5 * MINUTE) == []


def test_partial_bars_are_not_stored(store: AnalyticsStore) -> None:
    assert store.write_bars(SYM, [make_bar(0, final=False), make_bar(1)]) == 1
    assert store.bars_between(SYM, 0, 2**62) == [make_bar(1)]
    with pytest.raises(ValueError, match="1m"):
        store.write_bars(SYM, [msgspec.structs.replace(make_bar(2), timeframe="5m")])


def test_repeated_writes_are_idempotent(store: AnalyticsStore, database_url: str) -> None:
    bars = [make_bar(i) for i in range(50)]
    profiles = [make_profile(s, final=s < 2, ts_event=T0 + s) for s in range(3)]
    store.write_bars(SYM, bars)
    store.write_profiles(SYM, profiles)
    first_bars = table_rows(database_url, bars_1m)
    first_profiles = table_rows(database_url, session_profiles)
    for _ in range(3):
        store.write_bars(SYM, bars)
        store.write_profiles(SYM, profiles)
    assert table_rows(database_url, bars_1m) == first_bars
    assert table_rows(database_url, session_profiles) == first_profiles
    assert count(database_url, bars_1m) == 50
    assert count(database_url, session_profiles) == 3
    assert store.bars_between(SYM, 0, 2**62) == bars
    assert store.profiles(SYM, 0) == profiles


def test_ten_thousand_bars_in_one_call(store: AnalyticsStore, database_url: str) -> None:
    bars = [make_bar(i) for i in range(10_000)]
    assert store.write_bars(SYM, bars) == 10_000
    assert count(database_url, bars_1m) == 10_000
    assert store.bars_between(SYM, 0, 2**62) == bars


def test_higher_rev_wins_and_lower_rev_never_undoes_it(store: AnalyticsStore) -> None:
    closed = make_bar(0, rev=3)
    amended = make_bar(0, rev=5, volume=999.5)
    store.write_bars(SYM, [closed])
    store.write_bars(SYM, [amended])
    assert store.bars_between(SYM, 0, 2**62) == [amended]
    store.write_bars(SYM, [closed])  # a replay of the original close
    assert store.bars_between(SYM, 0, 2**62) == [amended]
    # within one batch the highest rev wins, whatever its position
    store.write_bars(SYM, [make_bar(1, rev=9, volume=7.0), make_bar(1, rev=4)])
    assert store.bars_between(SYM, T0 + MINUTE, T0 + 2 * MINUTE) == [make_bar(1, rev=9, volume=7.0)]


def test_final_profile_is_never_overwritten_by_developing(store: AnalyticsStore) -> None:
    developing = make_profile(0, final=False, ts_event=T0 + 10, poc=100.0)
    final = make_profile(0, final=True, ts_event=T0 + 20, poc=100.5)
    late = make_profile(0, final=False, ts_event=T0 + 30, poc=101.0)
    store.write_profiles(SYM, [developing])
    assert store.profiles(SYM, 0) == [developing]
    store.write_profiles(SYM, [final])
    store.write_profiles(SYM, [late])
    assert store.profiles(SYM, 0) == [final]
    # the same within one batch, in either order
    other = [
        make_profile(1, final=True, ts_event=T0 + 5),
        make_profile(1, final=False, ts_event=T0 + 50),
    ]
    store.write_profiles(SYM, other)
    store.write_profiles(SYM, other[::-1])
    assert store.profiles(SYM, 0) == [final, other[0]]
    # a developing update replaces an older developing one, never the other way round
    newer = make_profile(2, final=False, ts_event=T0 + 9, poc=99.0)
    store.write_profiles(SYM, [newer])
    store.write_profiles(SYM, [make_profile(2, final=False, ts_event=T0 + 8)])
    assert store.profiles(SYM, 0)[-1] == newer


def test_profiles_since_selects_sessions_ending_after(store: AnalyticsStore) -> None:
    updates = [make_profile(s, final=True, ts_event=T0 + s) for s in range(4)]
    composite = make_profile(3, final=False, ts_event=T0, scope="composite:5")
    store.write_profiles(SYM, [*updates, composite])
    since = updates[1].session_end  # session 1 ends exactly here: not after
    assert store.profiles(SYM, since) == [updates[2], composite, updates[3]]
    assert store.profiles("ETHUSDT", 0) == []


def test_concurrent_writers_of_the_same_batch_agree(
    store: AnalyticsStore, database_url: str
) -> None:
    bars = [make_bar(i, rev=i % 4) for i in range(2_000)]
    profiles = [make_profile(s, final=s % 2 == 0, ts_event=T0 + s) for s in range(20)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer() -> None:
        try:
            with AnalyticsStore(database_url) as own:
                barrier.wait()
                for _ in range(3):
                    own.write_bars(SYM, bars)
                    own.write_profiles(SYM, profiles)
        except BaseException as exc:  # surfaced below: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    concurrent = table_rows(database_url, bars_1m), table_rows(database_url, session_profiles)

    assert store.bars_between(SYM, 0, 2**62) == bars
    assert store.profiles(SYM, 0) == profiles
    # and identical to what one writer alone leaves
    store.write_bars(SYM, bars)
    store.write_profiles(SYM, profiles)
    assert (table_rows(database_url, bars_1m), table_rows(database_url, session_profiles)) == (
        concurrent
    )


def test_tick_volume_profiles_keep_their_kind(store: AnalyticsStore) -> None:
    ticks = msgspec.structs.replace(
        make_profile(0, final=True, ts_event=T0), volume_kind=SizeKind.TICKS
    )
    real = make_profile(1, final=True, ts_event=T0)
    store.write_profiles(SYM, [ticks, real])
    assert [p.volume_kind for p in store.profiles(SYM, 0)] == [SizeKind.TICKS, SizeKind.REAL]
    assert store.profiles(SYM, 0) == [ticks, real]
