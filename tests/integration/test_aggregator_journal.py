"""The journal against a real PostgreSQL: a trade through entry, break-even and take-profit lands
as one row with every stop move, P&L, R and excursions; the bias as one row; every consumed
pattern signal as one row; replaying the
batches (a crash-restart) or writing them twice leaves the same rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, pool, select
from sqlalchemy.engine import make_url
from tests.unit.test_aggregator_fold import D2, MIN, inputs

from of_aggregator.fold import AggregatorFold
from of_aggregator.journal import Journal
from of_aggregator.service import journal_hook
from ofcommon.db import migrate, to_sync_url
from ofcommon.instruments import load_registry
from ofcommon.messages import Direction, Message, PatternSignal
from ofcommon.tables import journal_bias, journal_events, journal_signals, journal_trades

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    eng = create_engine(to_sync_url(database_url), poolclass=pool.NullPool)
    try:
        yield eng
    finally:
        eng.dispose()


def batches() -> list[list[tuple[str, Message]]]:
    """The fold's outputs per input of the hand-made day, with an initiative after the entry."""
    ins = inputs()
    at = next(i for i, (k, _) in enumerate(ins) if k == "patterns") + 2  # after bar 1
    ins.insert(
        at,
        (
            "patterns",
            PatternSignal("ini-1", D2 + 2 * MIN + 1, "initiative", Direction.LONG, 60_050.0, 60.0),
        ),
    )
    fold = AggregatorFold()
    state = fold.initial("BTCUSDT")
    return [[(o[0], o[1]) for o in fold.step(state, k, m)] for k, m in ins]


def snapshot(engine: Engine) -> tuple[list[tuple[object, ...]], ...]:
    with engine.connect() as c:
        return tuple(
            [tuple(r) for r in c.execute(select(t).order_by(*t.primary_key.columns)).all()]
            for t in (journal_events, journal_trades, journal_bias, journal_signals)
        )


async def test_a_trade_and_the_bias_are_journaled_once(database_url: str, engine: Engine) -> None:
    with Journal(database_url) as journal:
        hook = journal_hook(journal)
        out = batches()
        for b in out:
            await hook("BTCUSDT", b)
        first = snapshot(engine)
        # a restart re-runs the unacknowledged batches: same rows, none twice
        for b in out[3:]:
            await hook("BTCUSDT", b)
        await hook("BTCUSDT", [o for b in out for o in b])
        assert snapshot(engine) == first

    with engine.connect() as c:
        (trade,) = c.execute(select(journal_trades)).mappings().all()
        (bias,) = c.execute(select(journal_bias)).mappings().all()
        kinds = [
            r.kind
            for r in c.execute(
                select(journal_events.c.kind).order_by(
                    journal_events.c.ts_event, journal_events.c.event_id
                )
            )
        ]
    tick = load_registry().get("BTCUSDT").tick_size
    entry, stop0, target, exit_price = 59_620.0, 59_470.0, 60_900.0, 60_900.0
    assert (trade["direction"], trade["entry_price"], trade["stop"], trade["target"]) == (
        1,
        entry,
        stop0,
        target,
    )
    # the initial stop, then the break-even move to the entry
    assert [s[1:] for s in trade["stops"]] == [[stop0, "entry"], [entry, "breakeven"]]
    assert trade["stops"][1][0] == D2 + 2 * MIN + 1
    assert (trade["exit_price"], trade["exit_reason"]) == (exit_price, "take_profit")
    assert trade["pnl_ticks"] == pytest.approx((exit_price - entry) / tick)
    assert trade["r_multiple"] == pytest.approx((exit_price - entry) / (entry - stop0))
    assert trade["mfe_ticks"] == pytest.approx((exit_price - entry) / tick)
    assert trade["grade"] == "C"
    assert trade["signals"] == ["abs-1"]
    assert (bias["session_id"], bias["direction"], bias["shape"]) == ("2024-01-01", 1, "p_shape")
    assert bias["confidence"] == pytest.approx(40 + 30 * 0.9)
    assert kinds == ["bias", "watch", "entry", "breakeven", "exit"]
    # every pattern the fold consumed, as it was sent (the test's own inputs are the reference)
    sent = [m for b in out for k, m in b if k == "consumed"]
    assert len(sent) == 2
    with engine.connect() as c:
        rows = c.execute(select(journal_signals)).mappings().all()
    assert {
        (r["signal_id"], r["pattern"], r["direction"], r["price"], r["strength"], r["ts_event"])
        for r in rows
    } == {
        ("abs-1", "absorption", 1, 59_600.0, 90.0, D2 + MIN + 1),
        ("ini-1", "initiative", 1, 60_050.0, 60.0, D2 + 2 * MIN + 1),
    }


class Sleeps:
    """The hook's backoff, recorded; ``then`` runs at the n-th sleep (the database coming back)."""

    def __init__(self, at: int = 0, then: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._at, self._then = at, then

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == self._at and self._then is not None:
            self._then()


@pytest.fixture
def absent_database(database_server_url: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """A URL of a database that does not exist yet, and a callable that creates it migrated."""
    base = make_url(to_sync_url(database_server_url))
    name = f"of_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql", database="postgres")
    admin_url = admin.render_as_string(hide_password=False)
    url = base.set(database=name).render_as_string(hide_password=False)

    def create() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        migrate(url)

    try:
        yield url, create
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_unreachable_journal_is_retried_until_it_answers(
    absent_database: tuple[str, Callable[[], None]],
) -> None:
    url, create = absent_database
    out = [o for b in batches() for o in b]
    sleeps = Sleeps(at=2, then=create)
    with Journal(url) as journal:
        await journal_hook(journal, sleep=sleeps)("BTCUSDT", out)
    assert sleeps.delays == [0.2, 0.4]
    eng = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            assert len(c.execute(select(journal_trades)).all()) == 1
    finally:
        eng.dispose()


class GiveUp(Exception):
    """Ends the test's wait: the hook itself never gives up."""


async def test_a_journal_that_stays_away_pauses_with_capped_backoff(
    absent_database: tuple[str, Callable[[], None]],
) -> None:
    url, _ = absent_database
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 8:
            raise GiveUp

    with Journal(url) as journal, pytest.raises(GiveUp):
        await journal_hook(journal, sleep=sleep)("BTCUSDT", [o for b in batches() for o in b])
    # doubling from 0.2 s, capped at 5 s: it pauses the instrument rather than restart the
    # worker (a restart re-delivers the inputs, and repeated deliveries look like poison)
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
