"""The aggregator service SIGKILLed three times mid-replay, and once taken over by a second
worker, yields an uninterrupted run's bias, trade events and journal. Inputs (bars, profiles,
patterns) go through the real bus Producer; the reference is the pure fold."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from sqlalchemy import create_engine, pool, select
from tests.support.aggregator_market import market
from tests.support.servers import spawn_service, wait_for

from of_aggregator.fold import AggregatorFold
from ofcommon import codec, entry_ids, keys
from ofcommon.bus import Producer
from ofcommon.db import migrate, to_sync_url
from ofcommon.instruments import load_registry
from ofcommon.messages import Message, TradeEvent
from ofcommon.stage import assign_ids
from ofcommon.tables import journal_events, journal_trades

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(120),
]

TARGET = "of_aggregator.service:SERVICE"
SYMBOLS = {"BTCUSDT": 60_000.0, "EURUSD": 1.1}
OUTPUTS = ("bias", "tradeevents")
MIDNIGHT = 1_700_006_400 * 1_000_000_000
ROUNDS = 4
DAYS = 6

Entries = list[tuple[str, bytes]]


def _inputs() -> list[tuple[str, str, Message]]:
    reg = load_registry()
    per = {s: market(reg.get(s), b, MIDNIGHT, DAYS, seed=11) for s, b in SYMBOLS.items()}
    # interleave the instruments: the stage owns them independently
    out = []
    for i in range(max(len(v) for v in per.values())):
        for s, items in per.items():
            if i < len(items):
                out.append((s, *items[i]))
    return out


async def _write(url: str, items: list[tuple[str, str, Message]]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        producer = Producer(client, service="test", trim_by_age=False)
        for symbol, kind, msg in items:
            # one at a time: the entry IDs then follow event time across the three streams,
            # as they do live (a pattern is written after the bar it was detected on)
            producer.add(keys.stream(symbol, kind), msg)
            await producer.flush()
            await asyncio.sleep(0.003)  # a paced replay: the kills land while entries arrive
    finally:
        await client.aclose()


def _expected(r: sync_redis.Redis, symbol: str) -> dict[str, Entries]:
    """The pure fold over the stored inputs in entry-ID order, IDs derived as the stage does."""
    fold = AggregatorFold(load_registry())
    state = fold.initial(symbol)
    last: dict[str, entry_ids.EntryId] = {}
    out: dict[str, Entries] = {k: [] for k in (*OUTPUTS, "status")}
    entries = sorted(
        (entry_ids.parse(entry_id), n, kind, fields[b"d"])
        for n, kind in enumerate(fold.inputs)
        for entry_id, fields in r.xrange(keys.stream(symbol, kind))
    )
    for at, _, kind, data in entries:
        outputs = [o for o in fold.step(state, kind, codec.decode(data), at) if o[0] in out]
        for out_kind, out_id, result in assign_ids(outputs, at, last):
            out[out_kind].append((str(out_id), codec.encode(result)))
    return out


def _output_counts(items: list[tuple[str, str, Message]], chunk: int) -> list[int]:
    """How many bias and trade-event entries the pure fold has written after each chunk."""
    fold = AggregatorFold(load_registry())
    states = {s: fold.initial(s) for s in SYMBOLS}
    counts, total = [], 0
    for i, (symbol, kind, msg) in enumerate(items, 1):
        total += sum(o[0] in OUTPUTS for o in fold.step(states[symbol], kind, msg))
        if i % chunk == 0 or i == len(items):
            counts.append(total)
    return counts


def _owned(r: sync_redis.Redis, worker: str) -> bool:
    """``worker`` holds the lease of every instrument (lease value ``worker:generation``)."""
    return all(
        (r.get(keys.lease(s, "aggregator")) or b"").startswith(f"{worker}:".encode())
        for s in SYMBOLS
    )


def _actual(r: sync_redis.Redis, symbol: str, kind: str) -> Entries:
    return [(i.decode(), f[b"d"]) for i, f in r.xrange(keys.stream(symbol, kind))]


def _outputs(r: sync_redis.Redis) -> int:
    return sum(r.xlen(keys.stream(s, k)) for s in SYMBOLS for k in OUTPUTS)


def test_sigkill_restart_and_takeover_is_exactly_once(
    service_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261204)
    migrate(database_url)
    url = service_env["OF_REDIS_URL"]
    r = sync_redis.Redis.from_url(url)
    env = {
        **service_env,
        "OF_DATABASE_URL": database_url,
        "OF_INSTRUMENTS": ",".join(SYMBOLS),
        "OF_CHECKPOINT_INTERVAL_S": "0.2",
        "OF_READ_COUNT": "5",
        "OF_LEASE_TTL_S": "2",
        "OF_WORKER_DEAD_AFTER_S": "1",
        "OF_MEMBERSHIP_TICK_S": "0.2",
    }
    items = _inputs()
    chunk = -(-len(items) // ROUNDS)
    targets = _output_counts(items, chunk)
    kills = 0
    interrupted = 0
    worker = "aggregator-0"
    proc = spawn_service(TARGET, env, tmp_path, "run0", OF_WORKER_ID=worker)
    others = []
    try:
        for round_no in range(1, ROUNDS + 1):
            # the worker is up and owns both instruments: the chunk arrives while it runs
            wait_for(lambda w=worker: _owned(r, w), 30, f"{worker} to own every instrument")
            before = _outputs(r)
            # the chunk is written while the worker runs, so that the kill lands mid-stream
            part = items[(round_no - 1) * chunk : round_no * chunk]
            writer = threading.Thread(target=asyncio.run, args=(_write(url, part),))
            writer.start()
            wait_for(lambda b=before: _outputs(r) > b, 30, "progress")
            if round_no == 3:
                # A second worker joins and, once the first dies, takes every instrument over.
                second = spawn_service(
                    TARGET, env, tmp_path, "second", OF_WORKER_ID="aggregator-second"
                )
                time.sleep(rng.uniform(0.1, 0.3))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                writer.join()
                kills += 1
                others.append(proc)
                proc, worker = second, "aggregator-second"
                continue
            time.sleep(rng.uniform(0.0, 0.1))
            # Entries still arriving when the kill lands: the worker cannot have seen the whole
            # chunk. Bias and trade events are sparse (a few per session), so the chunk's tail
            # often adds no output and the output count alone would miss such a kill.
            arriving = writer.is_alive()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            writer.join()
            kills += 1
            # or fewer outputs than the pure fold gives for what was written: killed mid-stream
            interrupted += int(arriving or _outputs(r) < targets[round_no - 1])
            worker = f"aggregator-{round_no}"
            proc = spawn_service(TARGET, env, tmp_path, f"run{round_no}", OF_WORKER_ID=worker)
        expected = {s: _expected(r, s) for s in SYMBOLS}

        def caught_up() -> bool:
            return all(
                r.xlen(keys.stream(s, k)) >= len(expected[s][k]) for s in SYMBOLS for k in OUTPUTS
            )

        wait_for(caught_up, 60, "the restarted stage to catch up")
        time.sleep(0.5)  # anything extra written late would show below
        engine = create_engine(to_sync_url(database_url), poolclass=pool.NullPool)
        try:
            for s in SYMBOLS:
                for k in OUTPUTS:
                    assert _actual(r, s, k) == expected[s][k], f"{s} {k}: differs from the fold"
                # the status stream is trimmed to its newest entries: the current one agrees
                assert _actual(r, s, "status")[-1] == expected[s]["status"][-1]
                events = [codec.decode(d) for _, d in expected[s]["tradeevents"]]
                evs = [e for e in events if isinstance(e, TradeEvent)]
                kinds = {e.kind for e in evs}
                assert {"entry", "exit", "breakeven", "trail"} <= kinds, kinds
                with engine.connect() as c:
                    rows = c.execute(
                        select(journal_events.c.event_id).where(journal_events.c.symbol == s)
                    ).all()
                    trades = c.execute(
                        select(journal_trades.c.trade_id, journal_trades.c.exit_price)
                        .where(journal_trades.c.symbol == s)
                        .order_by(journal_trades.c.entry_ts)
                    ).all()
                assert sorted(x.event_id for x in rows) == sorted(e.event_id for e in evs)
                assert [(t.trade_id, t.exit_price) for t in trades] == [
                    (e.trade_id, e.price) for e in evs if e.kind == "exit"
                ]
        finally:
            engine.dispose()
        assert kills == ROUNDS
        assert interrupted >= 2, "most kills must land while the stage is mid-stream"
        assert all(r.xlen(keys.dead_letters(s)) == 0 for s in SYMBOLS)
        # the restarted worker re-folds what its predecessor had not checkpointed (its outputs
        # are refused as repeats) and acknowledges every input
        wait_for(
            lambda: all(
                r.xpending(keys.stream(sym, kind), "aggregator")["pending"] == 0
                for sym in SYMBOLS
                for kind in ("bars", "profile", "patterns")
            ),
            60,
            "every input acknowledged",
        )
        proc.terminate()
        assert proc.wait(20) == 0  # SIGTERM: the final checkpoint acknowledges everything
        # and a worker started after the clean stop re-writes nothing
        written = {(sym, k): _actual(r, sym, k) for sym in SYMBOLS for k in OUTPUTS}
        proc = spawn_service(TARGET, env, tmp_path, "after", OF_WORKER_ID="aggregator-after")
        wait_for(lambda: _owned(r, "aggregator-after"), 30, "a new worker to own every instrument")
        time.sleep(1.0)
        assert {(sym, k): _actual(r, sym, k) for sym in SYMBOLS for k in OUTPUTS} == written
    finally:
        for p in [proc, *others]:
            if p.poll() is None:
                p.kill()
                p.wait()
        r.close()
