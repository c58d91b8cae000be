"""The analytics rebuild from PostgreSQL alone (Redis lost everything): closed sessions, naked
POCs decided from later stored rows, the current session from bar footprints, and the row check.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from msgspec.structs import replace
from tests.support.fake_mt5_data import eurusd_quotes, fx_ticks, parse_ticks

from of_analytics.fold import AnalyticsFold
from of_analytics.persist import AnalyticsStore
from of_analytics.rebuild import AnalyticsRebuild
from of_analytics.service import persisted
from ofcommon import keys
from ofcommon.bus import Producer, ensure_group
from ofcommon.db import migrate
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, FootprintRow, ProfileUpdate, SizeKind, Trade

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SYMBOL = "BTCUSDT"  # FULL_DAY sessions (UTC days), rows of 10.0
MINUTE = 60 * 1_000_000_000
DAY = 1440 * MINUTE
DAY0 = 1_699_920_000 * 1_000_000_000  # 2023-11-14 00:00 UTC


def _session(day: int, poc: float, rows: list[tuple[float, float]]) -> ProfileUpdate:
    start = DAY0 + day * DAY
    return ProfileUpdate(
        scope="session",
        session_id=f"2023-11-{14 + day:02d}",
        session_start=start,
        session_end=start + DAY,
        ts_event=start + DAY,
        poc=poc,
        vah=max(p for p, _ in rows),
        val=min(p for p, _ in rows),
        volume=sum(v for _, v in rows),
        rows=rows,
        shape="d_shape",
        final=True,
    )


def _bar(open_ts: int, cells: list[tuple[float, float, float]]) -> Bar:
    volume = sum(b + a for _, b, a in cells)
    buy = sum(a for _, _, a in cells)
    prices = [p for p, _, _ in cells]
    return Bar(
        "1m",
        open_ts,
        open_ts + MINUTE,
        prices[0],
        max(prices) + 9.0,
        min(prices),
        prices[-1],
        volume,
        buy,
        volume - buy,
        2 * buy - volume,
        min(0.0, 2 * buy - volume),
        max(0.0, 2 * buy - volume),
        len(cells),
        sum(p * (b + a) for p, b, a in cells) / volume,
        prices[0],
        [FootprintRow(p, b, a, 1) for p, b, a in cells],
        True,
        1,
    )


@pytest.fixture
def store(database_url: str) -> Iterator[AnalyticsStore]:
    migrate(database_url)
    with AnalyticsStore(database_url) as s:
        s.write_profiles(
            SYMBOL,
            [
                # day 0's POC is traded by day 1; day 1's by the current session's bars
                _session(0, 65000.0, [(64990.0, 1.0), (65000.0, 5.0)]),
                _session(1, 65100.0, [(65000.0, 2.0), (65100.0, 6.0)]),
                # day 2's POC is traded by no later session: it stays naked
                _session(2, 65300.0, [(65200.0, 1.0), (65300.0, 4.0)]),
            ],
        )
        yield s


async def _rebuild(redis: aioredis.Redis, store: AnalyticsStore) -> AnalyticsRebuild:
    for kind in ("trades", "book"):
        await ensure_group(redis, keys.stream(SYMBOL, kind), "analytics")
    registry = load_registry()
    return AnalyticsRebuild(AnalyticsFold(registry), store, registry)


async def test_sessions_naked_pocs_and_current_session_from_storage(
    redis: aioredis.Redis, store: AnalyticsStore
) -> None:
    today = DAY0 + 3 * DAY
    store.write_bars(
        SYMBOL,
        [
            # deltas 0.5 and 1.5; the continuous CVD had reached 10 before the session
            replace(
                _bar(today, [(65100.0, 1.0, 2.0), (65200.0, 0.5, 0.0)]), cvd=0.5, cvd_total=10.5
            ),
            replace(_bar(today + MINUTE, [(65200.0, 0.0, 1.5)]), cvd=2.0, cvd_total=12.0),
        ],
    )
    rebuild = await _rebuild(redis, store)
    rebuilt = await rebuild(SYMBOL, redis)
    assert rebuilt is not None
    assert rebuilt.positions == {}  # nothing consumed: the streams start from their groups
    state = rebuilt.state
    profiler = state.profiler
    assert [(p.session_id, p.price) for p in profiler.naked_pocs] == [("2023-11-16", 65300.0)]
    [session, composite] = profiler.developing()
    assert (session.session_id, session.session_start) == ("2023-11-17", today)
    assert session.rows == [(65100.0, 3.0), (65200.0, 2.0)]
    assert session.poc == 65100.0
    # composite:3 = the current session plus the two sessions closed before it
    assert composite.scope == "composite:3"
    assert composite.session_start == DAY0 + DAY
    assert composite.volume == 8.0 + 5.0 + 5.0
    assert state.bars.floor_ts == today + 2 * MINUTE
    assert state.bars.composed["5m"].volume == 5.0
    # both cumulative deltas continue from the last stored bar's
    assert (state.bars.cvd.session_cvd, state.bars.cvd.cvd) == (2.0, 12.0)
    # Rows are stored but the group consumed nothing: Redis lost the stream, trades may be missing.
    assert state.bars.gaps == 1


async def test_footprint_rows_that_do_not_nest_in_profile_rows_are_not_used(
    redis: aioredis.Redis, store: AnalyticsStore, caplog: pytest.LogCaptureFixture
) -> None:
    today = DAY0 + 3 * DAY
    # rows every 3.0 (300 ticks) cannot be summed exactly into profile rows of 10.0
    store.write_bars(SYMBOL, [_bar(today, [(65100.0, 1.0, 2.0), (65103.0, 0.5, 0.0)])])
    rebuild = await _rebuild(redis, store)
    rebuilt = await rebuild(SYMBOL, redis)
    assert rebuilt is not None
    assert rebuilt.state.profiler.developing() == []
    assert "do not nest in profile rows" in caplog.text
    # The closed sessions are exact whatever the footprint: day 2's POC is still naked.
    assert [p.session_id for p in rebuilt.state.profiler.naked_pocs] == ["2023-11-16"]


async def test_tick_volume_profile_of_a_quote_only_instrument_is_rebuilt(
    redis: aioredis.Redis, store: AnalyticsStore
) -> None:
    """The real EURUSD quotes (tick-count trades): stored bars carry no tick volume, so the
    current session's tick-volume profile comes from the stream back to the session's start."""
    registry = load_registry()
    fx = "EURUSD"
    trades = parse_ticks(registry, fx, fx_ticks(eurusd_quotes()))
    fold = AnalyticsFold(registry)
    live = fold.initial(fx)
    outputs = [o for t in trades for o in fold.step(live, "trades", t)]
    bars, profiles = persisted(outputs)
    store.write_bars(fx, bars)
    store.write_profiles(fx, profiles)
    producer = Producer(redis, service="test", trim_by_age=False)
    for t in trades:
        producer.add(keys.stream(fx, "trades"), t)
    await producer.flush()
    for kind in ("trades", "book"):
        await ensure_group(redis, keys.stream(fx, kind), "analytics")
    [(last_id, _)] = await redis.xrevrange(keys.stream(fx, "trades"), count=1)
    await redis.xgroup_setid(keys.stream(fx, "trades"), "analytics", last_id)

    rebuilt = await AnalyticsRebuild(fold, store, registry)(fx, redis)
    assert rebuilt is not None
    session, composite = rebuilt.state.profiler.developing()
    # The reference: one count per quote of the session in its 0.0005 row (50 ticks of 0.00001).
    start = session.session_start
    assert start == 1_577_923_200 * 1_000_000_000  # 2020-01-02 00:00 UTC

    def counts(ts: list[Trade]) -> dict[int, float]:
        out: dict[int, float] = {}
        for t in ts:
            row = round(t.price / 0.00001) // 50
            out[row] = out.get(row, 0.0) + t.size
        return out

    today = counts([t for t in trades if t.ts_event >= start])
    everything = counts(trades)
    assert session.volume_kind is composite.volume_kind is SizeKind.TICKS
    assert {round(p / 0.0005): n for p, n in session.rows} == today
    assert {round(p / 0.0005): n for p, n in composite.rows} == everything
    assert rebuilt.state.profiler.naked_pocs == live.profiler.naked_pocs
