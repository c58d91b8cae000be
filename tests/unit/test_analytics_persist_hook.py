"""The analytics service's persistence hook against a real PostgreSQL: what it stores, that it
retries a database that is away and never drops a write, and that a row the database refuses
for good is named (``Rejected``) instead of being retried forever."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from of_analytics import service
from of_analytics.persist import AnalyticsStore
from ofcommon import codec, keys
from ofcommon.db import migrate, to_sync_url
from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.messages import Bar, Heartbeat, Message, ProfileUpdate
from ofcommon.ownership import Lease
from ofcommon.stage import Output, OwnedStage, Rejected, StageTiming, StructStateFold

pytestmark = pytest.mark.postgres

SYM = "BTCUSDT"
MINUTE = 60_000_000_000
INT4_MAX = 2**31 - 1


def bar(timeframe: str, *, final: bool, minute: int = 0, trades: int = 1) -> Bar:
    return Bar(
        timeframe=timeframe,
        open_ts=minute * MINUTE,
        close_ts=(minute + 1) * MINUTE,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
        buy_volume=1.0,
        sell_volume=0.0,
        delta=1.0,
        delta_min=0.0,
        delta_max=1.0,
        trades=trades,
        vwap=1.0,
        poc=1.0,
        footprint=[],
        final=final,
        rev=int(final),
    )


def profile(*, final: bool) -> ProfileUpdate:
    return ProfileUpdate(
        scope="session",
        session_id="2023-11-15",
        session_start=0,
        session_end=10,
        ts_event=5,
        poc=1.0,
        vah=1.0,
        val=1.0,
        volume=1.0,
        rows=[],
        shape="D",
        final=final,
    )


OUTPUTS: list[tuple[str, Message]] = [
    ("bars", bar("1m", final=True)),
    ("bars", bar("5m", final=True)),
    ("profile", profile(final=True)),
    ("bars", bar("1m", final=False, minute=1)),
    ("profile", profile(final=False)),
]


class StopRetrying(Exception):
    """Ends a hook that would retry for ever."""


class Sleeps:
    """The hook's backoff, recorded; ``then`` runs at the n-th sleep (a database coming back)."""

    def __init__(
        self, at: int = 0, then: Callable[[], None] | None = None, stop_after: int = 0
    ) -> None:
        self.delays: list[float] = []
        self._at = at
        self._then = then
        self._stop_after = stop_after

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == self._at and self._then is not None:
            self._then()
        if len(self.delays) == self._stop_after:
            raise StopRetrying  # the test has seen enough: the hook would go on


@pytest.fixture
def store(database_url: str) -> Iterator[AnalyticsStore]:
    migrate(database_url)
    with AnalyticsStore(database_url) as s:
        yield s


@pytest.fixture
def absent_database(database_server_url: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """A URL of a database that does not exist yet, and a callable that creates it migrated."""
    base = make_url(to_sync_url(database_server_url))
    name = f"of_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    url = base.set(database=name).render_as_string(hide_password=False)

    def create() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        migrate(url)

    try:
        yield url, create
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_only_final_1m_bars_and_final_profiles_are_stored() -> None:
    assert service.persisted(OUTPUTS) == ([bar("1m", final=True)], [profile(final=True)])


async def test_hook_writes_final_rows_and_skips_the_rest(store: AnalyticsStore) -> None:
    hook = service.persist_hook(store)
    await hook(SYM, OUTPUTS)
    await hook(SYM, [OUTPUTS[3], OUTPUTS[4]])  # nothing final: nothing written
    assert store.bars_between(SYM, 0, 10 * MINUTE) == [bar("1m", final=True)]
    assert store.profiles(SYM, 0) == [profile(final=True)]


async def test_hook_retries_a_database_that_is_away_until_it_answers(
    absent_database: tuple[str, Callable[[], None]],
) -> None:
    url, create = absent_database
    sleeps = Sleeps(at=2, then=create)  # the database appears during the second backoff
    with AnalyticsStore(url) as away:
        await service.persist_hook(away, sleep=sleeps)(SYM, OUTPUTS)
        assert away.bars_between(SYM, 0, 10 * MINUTE) == [bar("1m", final=True)]
    assert len(sleeps.delays) == 2
    assert sleeps.delays[1] == min(service.BACKOFF_S * 2, service.BACKOFF_MAX_S)


async def test_hook_waits_for_a_database_that_stays_away_and_never_drops(
    absent_database: tuple[str, Callable[[], None]],
) -> None:
    # An outage is nobody's fault: no restart (each would re-deliver the inputs, which the stage
    # then takes for poison), no Rejected; the hook retries with capped backoff until it answers.
    url, create = absent_database
    sleeps = Sleeps(stop_after=40)
    with AnalyticsStore(url) as away, pytest.raises(StopRetrying):
        await service.persist_hook(away, sleep=sleeps)(SYM, OUTPUTS)
    assert len(sleeps.delays) == 40
    assert max(sleeps.delays) == service.BACKOFF_MAX_S
    create()
    with AnalyticsStore(url) as back:
        assert back.bars_between(SYM, 0, 10 * MINUTE) == []  # nothing written meanwhile


async def test_a_row_the_database_refuses_is_named_not_retried(store: AnalyticsStore) -> None:
    # trades is an int4 column: PostgreSQL refuses this bar as out of range, every time.
    bad = bar("1m", final=True, minute=2, trades=INT4_MAX + 1)
    outputs: list[tuple[str, Message]] = [
        *OUTPUTS,
        ("bars", bad),
        ("bars", bar("1m", final=True, minute=3)),
    ]
    sleeps = Sleeps()
    with pytest.raises(Rejected) as err:
        await service.persist_hook(store, sleep=sleeps)(SYM, outputs)
    assert err.value.index == len(OUTPUTS)
    assert "out of range" in err.value.reason
    assert sleeps.delays == []
    # The rows before it were written while looking for it (upserts: harmless when re-run).
    assert store.bars_between(SYM, 0, 2 * MINUTE) == [bar("1m", final=True)]


class BarPerHeartbeat(StructStateFold[list[int]]):
    """A final 1m bar per heartbeat (minute = the heartbeat's time, trades = its receive time),
    and the heartbeat times taken, in the state."""

    stage = "persisting"
    inputs = ("trades",)
    state_type = list[int]

    def initial(self, symbol: str) -> list[int]:
        return []

    def step(
        self, state: list[int], kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        assert isinstance(msg, Heartbeat)
        state.append(msg.ts_event)
        return [("bars", bar("1m", final=True, minute=msg.ts_event, trades=msg.ts_recv))]


@pytest.mark.redis
async def test_the_stage_dead_letters_the_input_of_a_refused_row_and_goes_on(
    redis: aioredis.Redis, store: AnalyticsStore
) -> None:
    trades = keys.stream(SYM, "trades")
    sent = [Heartbeat(m, INT4_MAX + 1 if m == 3 else m, "t") for m in range(1, 7)]
    for msg in sent:
        await redis.xadd(trades, {codec.FIELD: codec.encode(msg)}, id=f"{msg.ts_event}-0")
    fold = BarPerHeartbeat()
    lease = Lease(SYM, "w1", 1)
    await redis.set(keys.lease(SYM, fold.stage), lease.value)
    timing = StageTiming(checkpoint_interval_s=0.05, block_ms=20)
    stage: OwnedStage[list[int]] = OwnedStage(
        redis, fold, service="persisting", timing=timing, on_outputs=service.persist_hook(store)
    )
    good = [m.ts_event for m in sent if m.ts_recv <= INT4_MAX]
    await stage.on_acquire(lease)
    try:
        async with asyncio.timeout(30):
            while True:
                stored = await asyncio.to_thread(store.bars_between, SYM, 0, 10 * MINUTE)
                if (
                    len(stored) >= len(good)
                    and not (await redis.xpending(trades, fold.stage))["pending"]
                ):
                    break
                await asyncio.sleep(0.05)
    finally:
        await stage.on_release(lease)
    assert [b.open_ts // MINUTE for b in stored] == good
    dead = await redis.xrange(keys.dead_letters(SYM))
    assert [f[b"origin_id"] for _, f in dead] == [b"3-0"]
    assert dead[0][1][b"reason"].startswith(b"rejected: DataError")
    published = [
        codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(keys.stream(SYM, "bars"))
    ]
    assert [b.open_ts // MINUTE for b in published if isinstance(b, Bar)] == good


async def test_a_schema_problem_is_not_blamed_on_a_row(database_url: str) -> None:
    # No migration: every write fails (undefined table), whatever the row. Not the row's fault,
    # so nothing is rejected (dead-lettered): retried until someone migrates.
    sleeps = Sleeps(stop_after=15)
    with AnalyticsStore(database_url) as unmigrated, pytest.raises(StopRetrying):
        await service.persist_hook(unmigrated, sleep=sleeps)(SYM, OUTPUTS)
    assert len(sleeps.delays) == 15
