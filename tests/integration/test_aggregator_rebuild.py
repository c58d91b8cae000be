"""An aggregator instrument without a checkpoint is rebuilt from PostgreSQL (the journal and the
analytics tables) instead of starting empty: after the snapshot is deleted mid-trade or is of
another state version, or Redis loses everything, the run goes on to the outputs of an
uninterrupted pure fold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, create_engine, pool, select
from tests.support.aggregator_market import market

from of_aggregator.fold import STATE_VERSION, AggregatorFold, AggregatorState
from of_aggregator.journal import Journal
from of_aggregator.rebuild import AggregatorRebuild
from of_aggregator.service import journal_hook
from of_analytics.persist import AnalyticsStore
from ofcommon import codec, entry_ids, keys
from ofcommon.db import migrate, to_sync_url
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, Message, ProfileUpdate, TradeEvent
from ofcommon.ownership import Lease
from ofcommon.stage import InstrumentWorker, StageTiming, assign_ids
from ofcommon.tables import journal_trades

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SYMBOL = "BTCUSDT"
LEASE = Lease(SYMBOL, "aggregator", 1)
MIDNIGHT = 1_700_006_400 * 1_000_000_000
TIMING = StageTiming(checkpoint_interval_s=0.05, read_count=7, block_ms=50)
Inputs = list[tuple[str, Message]]
BASE_MS = int(time.time() * 1000)  # the first input's entry ID


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    eng = create_engine(to_sync_url(database_url), poolclass=pool.NullPool)
    try:
        yield eng
    finally:
        eng.dispose()


def _inputs() -> Inputs:
    # six days of the three endings (take-profit after break-even and trails, stop, exhaustion)
    return market(load_registry().get(SYMBOL), 60_000.0, MIDNIGHT, 6, seed=11)


def _cut_in_a_trade(items: Inputs) -> int:
    """An index into ``items`` a few inputs after the third entry (the fifth day's, which
    breaks even, trails and takes profit), before its exit."""
    fold = AggregatorFold()
    state = fold.initial(SYMBOL)
    entries = 0
    for i, (kind, msg) in enumerate(items):
        out = fold.step(state, kind, msg)
        entries += sum(isinstance(o[1], TradeEvent) and o[1].kind == "entry" for o in out)
        if entries == 3 and state.machine.trade is not None:
            return i + 3  # a few bars into the trade
    raise AssertionError("no third entry")


def _pure_events(items: Inputs) -> list[TradeEvent]:
    fold = AggregatorFold()
    state = fold.initial(SYMBOL)
    out = [o[1] for k, m in items for o in fold.step(state, k, m)]
    return [e for e in out if isinstance(e, TradeEvent)]


async def _publish(
    redis: aioredis.Redis, store: AnalyticsStore, items: Inputs, base_ms: int
) -> None:
    """As analytics does: bars and profiles stored in PostgreSQL, then published; patterns.
    Entry IDs a millisecond apart in event order across the streams (automatic IDs could give
    a pattern and the next bar one millisecond, which the stage orders bars first)."""
    store.write_bars(SYMBOL, [m for _, m in items if isinstance(m, Bar)])
    store.write_profiles(SYMBOL, [m for _, m in items if isinstance(m, ProfileUpdate)])
    for n, (kind, msg) in enumerate(items):
        fields = {codec.FIELD: codec.encode(msg)}
        await redis.xadd(keys.stream(SYMBOL, kind), fields, id=f"{base_ms + n}-0")


async def _run(
    redis: aioredis.Redis, fold: AggregatorFold, journal: Journal, rebuild: AggregatorRebuild
) -> None:
    """A worker until it has acknowledged every input, then a clean stop (checkpoint)."""
    worker = InstrumentWorker(
        redis,
        fold,
        LEASE,
        service="aggregator",
        timing=TIMING,
        on_outputs=journal_hook(journal),
        rebuild=rebuild,
    )
    task = asyncio.create_task(worker.run())

    async def behind() -> bool:
        for kind in fold.inputs:
            key = keys.stream(SYMBOL, kind)
            last = await redis.xrevrange(key, count=1)
            groups = await redis.xinfo_groups(key) if last else []
            done = [g for g in groups if g["name"] == b"aggregator"]
            if last and (not done or done[0]["last-delivered-id"] != last[0][0]):
                return True
            if done and done[0]["pending"]:
                return True
        return False

    async with asyncio.timeout(30):
        while True:  # polls the groups: nothing to wait on
            if not await behind():
                break
            await asyncio.sleep(0.05)
    worker.stop()
    await task


def _stream(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[str, bytes]]:
    return [(i.decode(), f[codec.FIELD]) for i, f in entries]


async def _expected(redis: aioredis.Redis) -> dict[str, list[tuple[str, bytes]]]:
    """The pure fold over every stored input in entry-ID order, IDs derived as the stage does."""
    fold = AggregatorFold()
    state = fold.initial(SYMBOL)
    last: dict[str, entry_ids.EntryId] = {}
    out: dict[str, list[tuple[str, bytes]]] = {"bias": [], "tradeevents": []}
    stored = [
        (entry_ids.parse(i.decode()), n, kind, f[codec.FIELD])
        for n, kind in enumerate(fold.inputs)
        for i, f in await redis.xrange(keys.stream(SYMBOL, kind))
    ]
    entries = sorted(stored)
    for at, _, kind, data in entries:
        outputs = [o for o in fold.step(state, kind, codec.decode(data), at) if o[0] in out]
        for out_kind, out_id, msg in assign_ids(outputs, at, last):
            out[out_kind].append((str(out_id), codec.encode(msg)))
    return out


class _OldFold(AggregatorFold):
    """A fold of an older release: its checkpoints carry another state version."""

    def initial(self, symbol: str) -> AggregatorState:
        return AggregatorState(symbol=symbol, version=STATE_VERSION - 1)


@pytest.mark.parametrize("loss", ["snapshot_deleted", "other_state_version"])
async def test_a_lost_snapshot_mid_trade_is_rebuilt_to_the_uninterrupted_outputs(
    redis: aioredis.Redis, database_url: str, engine: Engine, loss: str
) -> None:
    items = _inputs()
    cut = _cut_in_a_trade(items)
    await redis.set(keys.lease(SYMBOL, "aggregator"), LEASE.value)
    with Journal(database_url) as journal, AnalyticsStore(database_url) as store:
        fold = _OldFold() if loss == "other_state_version" else AggregatorFold()
        rebuild = AggregatorRebuild(fold, journal, store)
        await _publish(redis, store, items[:cut], BASE_MS)
        await _run(redis, fold, journal, rebuild)
        if loss == "snapshot_deleted":
            assert await redis.delete(keys.snapshot(SYMBOL, "aggregator")) == 1
        else:  # the new release cannot read the old state: it counts as none
            with pytest.raises(ValueError, match="state version"):
                AggregatorFold().decode_state(fold.encode_state(fold.initial(SYMBOL)))
        await _publish(redis, store, items[cut:], BASE_MS + cut)
        fold = AggregatorFold()  # a new process: nothing cached
        await _run(redis, fold, journal, AggregatorRebuild(fold, journal, store))
    expected = await _expected(redis)
    for kind, want in expected.items():
        got = _stream(await redis.xrange(keys.stream(SYMBOL, kind)))
        assert got == want, kind
    kinds = {
        m.kind for _, d in expected["tradeevents"] if isinstance(m := codec.decode(d), TradeEvent)
    }
    assert {"entry", "breakeven", "trail", "exit"} <= kinds
    # The journal holds every trade once, each closed.
    with engine.connect() as c:
        trades = c.execute(select(journal_trades)).mappings().all()
    exits = [
        m
        for _, d in expected["tradeevents"]
        if isinstance(m := codec.decode(d), TradeEvent) and m.kind == "exit"
    ]
    assert sorted(t["trade_id"] for t in trades) == sorted(e.trade_id for e in exits)
    assert all(t["exit_ts"] is not None for t in trades)


async def test_redis_lost_mid_trade_resumes_the_journaled_trade(
    redis: aioredis.Redis, database_url: str, engine: Engine
) -> None:
    items = _inputs()
    cut = _cut_in_a_trade(items)
    expected = _pure_events(items)
    before = len(_pure_events(items[:cut]))
    await redis.set(keys.lease(SYMBOL, "aggregator"), LEASE.value)
    with Journal(database_url) as journal, AnalyticsStore(database_url) as store:
        fold = AggregatorFold()
        await _publish(redis, store, items[:cut], BASE_MS)
        await _run(redis, fold, journal, AggregatorRebuild(fold, journal, store))
        with engine.connect() as c:
            (open_trade,) = c.execute(
                select(journal_trades).where(journal_trades.c.exit_ts.is_(None))
            ).mappings()
        await redis.flushdb()  # Redis lost everything: snapshot, streams, groups
        await redis.set(keys.lease(SYMBOL, "aggregator"), LEASE.value)
        await _publish(redis, store, items[cut:], BASE_MS + cut)
        fold = AggregatorFold()
        await _run(redis, fold, journal, AggregatorRebuild(fold, journal, store))
    got = [
        m
        for _, f in await redis.xrange(keys.stream(SYMBOL, "tradeevents"))
        if isinstance(m := codec.decode(f[codec.FIELD]), TradeEvent)
    ]
    # What the uninterrupted fold emits after the cut, event for event (ids included): the
    # resumed trade exits as it would have, with its P&L and excursions.
    assert got == expected[before:]
    assert [e.kind for e in got][:4] == ["breakeven", "trail", "exit", "bias"]
    exit_ = next(e for e in got if e.kind == "exit")
    assert exit_.trade_id == open_trade["trade_id"]
    with engine.connect() as c:
        row = (
            c.execute(
                select(journal_trades).where(journal_trades.c.trade_id == open_trade["trade_id"])
            )
            .mappings()
            .one()
        )
    assert (row["exit_price"], row["exit_reason"], row["mae_ticks"], row["mfe_ticks"]) == (
        exit_.price,
        exit_.reason,
        exit_.mae_ticks,
        exit_.mfe_ticks,
    )
