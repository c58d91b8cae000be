"""The analytics service SIGKILLed, restarted and taken over yields an uninterrupted run's output.
Inputs come from the simulator through the real bus Producer; the reference is the pure fold.
The same holds for the rows it persists: closed 1m bars and final profiles in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.support.servers import spawn_service, wait_for

from of_analytics.fold import AnalyticsFold
from of_analytics.persist import BAR_TIMEFRAME, AnalyticsStore
from ofcommon import codec, entry_ids, keys
from ofcommon.bus import Producer
from ofcommon.db import migrate
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, InstrumentSpec, ProfileUpdate
from ofcommon.simulator import SimConfig, simulate
from ofcommon.stage import assign_ids
from ofcommon.venue import Published

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(120),
]

TARGET = "of_analytics.service:SERVICE"
SYMBOLS = ["BTCUSDT", "EURUSD"]  # both FULL_DAY: the run crosses a session close at midnight
OUTPUTS = ("bars", "profile", "bookstats", "consumption")
MIDNIGHT = 1_700_006_400 * 1_000_000_000
ROUNDS = 4

Entries = list[tuple[str, bytes]]


def _inputs() -> list[Published]:
    registry = load_registry()
    config = SimConfig(
        instruments=tuple(registry.get(s) for s in SYMBOLS),
        start_ns=MIDNIGHT - 150 * 1_000_000_000,
        duration_ns=240 * 1_000_000_000,
    )
    items = [item for item in simulate(config) if isinstance(item, Published)]
    # The venues' ticks: BTCUSDT's before its first trade (adopted at once), EURUSD's mid-stream
    # (the book switches at once, bars and profile after midnight): both must survive the kills.
    t0 = MIDNIGHT - 150 * 1_000_000_000
    btc = InstrumentSpec(
        ts_event=t0, ts_recv=t0, venue="bybit:linear", venue_symbol="BTCUSDT", tick_size=0.1
    )
    eur = InstrumentSpec(
        ts_event=MIDNIGHT - 60 * 1_000_000_000,
        ts_recv=MIDNIGHT - 60 * 1_000_000_000,
        venue="mt5",
        venue_symbol="EURUSD",
        tick_size=0.0001,
    )
    cut = len(items) // 3
    return [
        Published("BTCUSDT", "trades", btc),
        Published("BTCUSDT", "book", btc),
        *items[:cut],
        Published("EURUSD", "trades", eur),
        Published("EURUSD", "book", eur),
        *items[cut:],
    ]


async def _write(url: str, items: list[Published]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        producer = Producer(client, service="test", trim_by_age=False)
        for i, item in enumerate(items):
            producer.add(keys.stream(item.symbol, item.kind), item.msg)
            if i % 500 == 499:
                await producer.flush()
        await producer.flush()
    finally:
        await client.aclose()


def _expected(r: sync_redis.Redis, symbol: str) -> dict[str, Entries]:
    """What an uninterrupted run writes: the pure fold over the inputs, IDs derived the same way.

    Bars and profiles depend on the trades stream only, book stats on the book stream only, and
    consumption events are resolved by both streams' event time and anchored at their book entry
    (``of_analytics.book``): any interleaving of the two streams within the engine's skew bound
    gives the same outputs, and the stage folds them in entry-ID order.
    """
    fold = AnalyticsFold(load_registry())
    state = fold.initial(symbol)
    last: dict[str, entry_ids.EntryId] = {}
    out: dict[str, Entries] = {k: [] for k in OUTPUTS}
    entries = sorted(
        (entry_ids.parse(entry_id), n, kind, fields[b"d"])
        for n, kind in enumerate(fold.inputs)
        for entry_id, fields in r.xrange(keys.stream(symbol, kind))
    )
    for at, _, kind, data in entries:  # in entry-ID order, as the stage merges its inputs
        outputs = fold.step(state, kind, codec.decode(data), at)
        for out_kind, out_id, result in assign_ids(outputs, at, last):
            out[out_kind].append((str(out_id), codec.encode(result)))
    return out


def _output_counts(items: list[Published], chunk: int) -> list[int]:
    """How many output entries the pure fold has written after each chunk of the inputs."""
    fold = AnalyticsFold(load_registry())
    states = {s: fold.initial(s) for s in SYMBOLS}
    counts = []
    total = 0
    for i, item in enumerate(items, 1):
        total += len(fold.step(states[item.symbol], item.kind, item.msg))
        if i % chunk == 0 or i == len(items):
            counts.append(total)
    return counts


def _expected_rows(entries: dict[str, Entries]) -> tuple[list[Bar], list[ProfileUpdate]]:
    """The rows an uninterrupted run stores: the pure fold's final 1m bars and final profiles,
    in the store's read order."""
    bars = [codec.decode(d) for _, d in entries["bars"]]
    profiles = [codec.decode(d) for _, d in entries["profile"]]
    final_bars = [
        b for b in bars if isinstance(b, Bar) and b.final and b.timeframe == BAR_TIMEFRAME
    ]
    final_profiles = [p for p in profiles if isinstance(p, ProfileUpdate) and p.final]
    final_bars.sort(key=lambda b: b.open_ts)
    final_profiles.sort(key=lambda p: (p.session_start, p.scope, p.session_id))
    return final_bars, final_profiles


def _actual(r: sync_redis.Redis, symbol: str, kind: str) -> Entries:
    return [(i.decode(), f[b"d"]) for i, f in r.xrange(keys.stream(symbol, kind))]


def _outputs(r: sync_redis.Redis) -> int:
    return sum(r.xlen(keys.stream(s, k)) for s in SYMBOLS for k in OUTPUTS)


def test_sigkill_restart_and_takeover_is_exactly_once(
    service_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261125)
    migrate(database_url)
    url = service_env["OF_REDIS_URL"]
    r = sync_redis.Redis.from_url(url)
    env = {
        **service_env,
        "OF_DATABASE_URL": database_url,
        "OF_INSTRUMENTS": ",".join(SYMBOLS),
        "OF_CHECKPOINT_INTERVAL_S": "0.2",
        "OF_READ_COUNT": "10",
        "OF_LEASE_TTL_S": "2",
        "OF_WORKER_DEAD_AFTER_S": "1",
        "OF_MEMBERSHIP_TICK_S": "0.2",
    }
    items = _inputs()
    chunk = -(-len(items) // ROUNDS)
    targets = _output_counts(items, chunk)
    kills = 0
    interrupted = 0
    proc = spawn_service(TARGET, env, tmp_path, "run0", OF_WORKER_ID="analytics-0")
    others = []
    try:
        for round_no in range(1, ROUNDS + 1):
            before = _outputs(r)
            asyncio.run(_write(url, items[(round_no - 1) * chunk : round_no * chunk]))
            wait_for(lambda b=before: _outputs(r) > b, 30, "progress")
            if round_no == 3:
                # A second worker joins and, once the first dies, takes every instrument over.
                second = spawn_service(
                    TARGET, env, tmp_path, "second", OF_WORKER_ID="analytics-second"
                )
                time.sleep(rng.uniform(0.5, 1.5))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                others.append(proc)
                proc = second
                continue
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            # fewer outputs than the pure fold gives for what was written: killed mid-stream
            interrupted += int(_outputs(r) < targets[round_no - 1])
            proc = spawn_service(
                TARGET, env, tmp_path, f"run{round_no}", OF_WORKER_ID=f"analytics-{round_no}"
            )
        expected = {s: _expected(r, s) for s in SYMBOLS}

        def caught_up() -> bool:
            return all(
                r.xlen(keys.stream(s, k)) >= len(expected[s][k]) for s in SYMBOLS for k in OUTPUTS
            )

        wait_for(caught_up, 60, "the restarted stage to catch up")
        time.sleep(0.5)  # anything extra written late would show below
        for s in SYMBOLS:
            for k in OUTPUTS:
                actual = _actual(r, s, k)
                assert len(actual) == len(expected[s][k]), f"{s} {k}: entry count differs"
                assert actual == expected[s][k], f"{s} {k}: output differs from the pure fold"
        assert kills == ROUNDS
        assert interrupted >= 2, "most kills must land while the stage is mid-stream"
        assert all(r.xlen(keys.dead_letters(s)) == 0 for s in SYMBOLS)
        # the run really produced closed bars and a closed session for every instrument
        for s in SYMBOLS:
            msgs = [codec.decode(d) for _, d in expected[s]["bars"] + expected[s]["profile"]]
            assert any(isinstance(m, Bar) and m.final for m in msgs)
            assert any(isinstance(m, ProfileUpdate) and m.final for m in msgs)
            assert expected[s]["bookstats"]
            assert len(expected[s]["consumption"]) > 10
        # PostgreSQL holds exactly the rows of an uninterrupted run (written before each ack)
        with AnalyticsStore(database_url) as store:
            for s in SYMBOLS:
                bars, profiles = _expected_rows(expected[s])
                assert bars
                assert profiles
                assert store.bars_between(s, 0, 2**62) == bars, f"{s}: stored bars differ"
                assert store.profiles(s, 0) == profiles, f"{s}: stored profiles differ"
        proc.terminate()
        assert proc.wait(20) == 0  # SIGTERM: the final checkpoint acknowledges everything
        for s in SYMBOLS:
            for kind in ("trades", "book"):
                assert r.xpending(keys.stream(s, kind), "analytics")["pending"] == 0
    finally:
        for p in [proc, *others]:
            if p.poll() is None:
                p.kill()
                p.wait()
        r.close()
