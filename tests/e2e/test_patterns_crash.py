"""The patterns service SIGKILLed, restarted and taken over yields an uninterrupted run's signals.
Inputs are the analytics outputs of a simulated run, written through the real bus Producer; the
reference is the pure fold over the streams as written, in entry-ID order.
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
from scripts.score_patterns import START, analytics_outputs
from tests.support.servers import spawn_service, wait_for

from of_patterns.fold import PatternsFold
from ofcommon import codec, entry_ids, keys
from ofcommon.bus import Producer
from ofcommon.instruments import load_registry
from ofcommon.messages import Message, PatternSignal
from ofcommon.simulator import SimConfig, simulate
from ofcommon.stage import assign_ids
from ofcommon.venue import Published

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(180)]

TARGET = "of_patterns.service:SERVICE"
SYMBOLS = ["BTCUSDT", "EURUSD"]
MINUTES = 24
WARMUP = 5  # bars: a short run still has episodes after the warm-up
ROUNDS = 4

Entries = list[tuple[str, bytes]]


def _inputs() -> list[tuple[str, str, Message]]:
    """(symbol, stream kind, message) of both instruments, in the order analytics wrote them."""
    registry = load_registry()
    config = SimConfig(
        instruments=tuple(registry.get(s) for s in SYMBOLS),
        start_ns=START,
        duration_ns=MINUTES * 60 * 1_000_000_000,
        seed=7,
    )
    items = [i for i in simulate(config) if isinstance(i, Published)]
    merged = []
    for s in SYMBOLS:
        outs = analytics_outputs(registry, s, [i for i in items if i.symbol == s])
        merged += [(at, s, k, m) for at, k, m in outs if k in PatternsFold.inputs]
    merged.sort(key=lambda e: e[0])
    return [(s, k, m) for _, s, k, m in merged]


async def _write(url: str, items: list[tuple[str, str, Message]]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        producer = Producer(client, service="test", trim_by_age=False)
        for i, (symbol, kind, msg) in enumerate(items):
            producer.add(keys.stream(symbol, kind), msg)
            if i % 500 == 499:
                await producer.flush()
        await producer.flush()
    finally:
        await client.aclose()


def _expected(r: sync_redis.Redis, symbol: str) -> Entries:
    """What an uninterrupted run writes: the pure fold over the streams in entry-ID order (ties:
    the stage's input order), output IDs derived the same way."""
    fold = PatternsFold(load_registry(), warmup=WARMUP)
    state = fold.initial(symbol)
    last: dict[str, entry_ids.EntryId] = {}
    entries = sorted(
        (entry_ids.parse(entry_id), n, kind, fields[b"d"])
        for n, kind in enumerate(fold.inputs)
        for entry_id, fields in r.xrange(keys.stream(symbol, kind))
    )
    out: Entries = []
    for at, _, kind, data in entries:
        for _, out_id, result in assign_ids(
            fold.step(state, kind, codec.decode(data), at), at, last
        ):
            out.append((str(out_id), codec.encode(result)))
    return out


def _actual(r: sync_redis.Redis, symbol: str) -> Entries:
    return [(i.decode(), f[b"d"]) for i, f in r.xrange(keys.stream(symbol, "patterns"))]


def _summary(entries: Entries) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for entry_id, data in entries:
        m = codec.decode(data)
        assert isinstance(m, PatternSignal)
        out.append((entry_id, m.pattern, m.ts_event))
    return out


def _folded(r: sync_redis.Redis) -> int:
    """Input entries the stage has acknowledged or holds: progress even while nothing fires."""
    total = 0
    for s in SYMBOLS:
        for kind in PatternsFold.inputs:
            stream = keys.stream(s, kind)
            if not r.exists(stream):
                continue
            groups = r.xinfo_groups(stream)
            total += sum(int(g.get("entries-read") or 0) for g in groups)
    return total


def test_sigkill_restart_and_takeover_is_exactly_once(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(20261204)
    url = service_env["OF_REDIS_URL"]
    r = sync_redis.Redis.from_url(url)
    env = {
        **service_env,
        "OF_INSTRUMENTS": ",".join(SYMBOLS),
        "OF_PATTERNS_WARMUP_BARS": str(WARMUP),
        "OF_CHECKPOINT_INTERVAL_S": "0.2",
        "OF_READ_COUNT": "200",
        "OF_LEASE_TTL_S": "2",
        "OF_WORKER_DEAD_AFTER_S": "1",
        "OF_MEMBERSHIP_TICK_S": "0.2",
    }
    items = _inputs()
    chunk = -(-len(items) // ROUNDS)
    kills = 0
    proc = spawn_service(TARGET, env, tmp_path, "run0", OF_WORKER_ID="patterns-0")
    others = []
    try:
        for round_no in range(1, ROUNDS + 1):
            before = _folded(r)
            asyncio.run(_write(url, items[(round_no - 1) * chunk : round_no * chunk]))
            wait_for(lambda b=before: _folded(r) > b, 30, "progress")
            if round_no == 3:
                # A second worker joins and, once the first dies, takes every instrument over.
                second = spawn_service(TARGET, env, tmp_path, "second", OF_WORKER_ID="patterns-2nd")
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
            proc = spawn_service(
                TARGET, env, tmp_path, f"run{round_no}", OF_WORKER_ID=f"patterns-{round_no}"
            )
        expected = {s: _expected(r, s) for s in SYMBOLS}

        def caught_up() -> bool:
            return all(r.xlen(keys.stream(s, "patterns")) >= len(expected[s]) for s in SYMBOLS)

        counts = {s: (r.xlen(keys.stream(s, "patterns")), len(expected[s])) for s in SYMBOLS}
        wait_for(caught_up, 120, f"the restarted stage to catch up (written, expected: {counts})")
        time.sleep(0.5)  # anything extra written late would show below
        for s in SYMBOLS:
            assert _actual(r, s) == expected[s], (
                f"{s}: signals differ from the pure fold: {_summary(_actual(r, s))}"
                f" != {_summary(expected[s])}"
            )
        assert kills == ROUNDS
        assert all(r.xlen(keys.dead_letters(s)) == 0 for s in SYMBOLS)
        # the run really detected patterns, several kinds of them
        kinds = {
            m.pattern
            for s in SYMBOLS
            for _, d in expected[s]
            if isinstance(m := codec.decode(d), PatternSignal)
        }
        assert len(kinds) >= 3, kinds
        proc.terminate()
        assert proc.wait(20) == 0  # SIGTERM: the final checkpoint acknowledges everything
        for s in SYMBOLS:
            for kind in PatternsFold.inputs:
                if r.exists(keys.stream(s, kind)):
                    assert r.xpending(keys.stream(s, kind), "patterns")["pending"] == 0
    finally:
        for p in [proc, *others]:
            if p.poll() is None:
                p.kill()
                p.wait()
