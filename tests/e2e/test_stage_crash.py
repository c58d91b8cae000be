"""A stateful stage SIGKILLed and restarted yields exactly the output of an uninterrupted run."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.counting import CountingFold
from tests.support.servers import spawn_service, stop, wait_for

from ofcommon import codec, entry_ids, keys
from ofcommon.messages import Side, Trade

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

TARGET = "tests.support.counting:SERVICE"
SYMBOLS = ["BTCUSDT", "XAUUSDT", "EURUSD"]
N_PER_SYMBOL = 3000


def _expected(r: sync_redis.Redis, symbol: str) -> list[tuple[str, bytes]]:
    """What an uninterrupted run writes: the pure fold over the input, IDs derived the same way."""
    fold = CountingFold()
    state = fold.initial(symbol)
    last = entry_ids.ZERO
    out = []
    for entry_id, fields in r.xrange(keys.stream(symbol, "trades")):
        for index, (_, msg) in enumerate(fold.step(state, "trades", codec.decode(fields[b"d"]))):
            last = entry_ids.derive(entry_ids.parse(entry_id), index, last)
            out.append((str(last), codec.encode(msg)))
    return out


def _actual(r: sync_redis.Redis, symbol: str) -> list[tuple[str, bytes]]:
    return [(i.decode(), f[b"d"]) for i, f in r.xrange(keys.stream(symbol, "counts"))]


def _produce(r: sync_redis.Redis, start: int, n: int, rng: random.Random) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        for s in SYMBOLS:
            t = Trade(i, i, 100.0 + rng.random(), round(rng.uniform(0.1, 5), 3), Side.BUY, str(i))
            pipe.xadd(keys.stream(s, "trades"), {b"d": codec.encode(t)})
        if i % 200 == 0:
            pipe.execute()
    pipe.execute()


def test_sigkill_and_restart_is_exactly_once(service_env: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(20241125)
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    env = {
        **service_env,
        "OF_INSTRUMENTS": ",".join(SYMBOLS),
        "OF_CHECKPOINT_INTERVAL_S": "0.2",
        "OF_READ_COUNT": "50",
        "OF_LEASE_TTL_S": "2",
        "OF_WORKER_DEAD_AFTER_S": "1",
        "OF_MEMBERSHIP_TICK_S": "0.2",
        "COUNTING_WORK_S": "0.0003",
    }
    interrupted = 0
    produced = 0
    kills = 0
    proc = spawn_service(TARGET, env, tmp_path, "run0", OF_WORKER_ID="counter-0")
    try:
        for round_no in range(1, 5):
            _produce(r, produced, N_PER_SYMBOL // 4, rng)
            produced += N_PER_SYMBOL // 4
            # let it get somewhere, then kill it at a random moment mid-stream
            wait_for(
                lambda: sum(r.xlen(keys.stream(s, "counts")) for s in SYMBOLS) > 0, 30, "progress"
            )
            time.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if any(r.xlen(keys.stream(s, "counts")) < produced for s in SYMBOLS):
                interrupted += 1
            proc = spawn_service(
                TARGET, env, tmp_path, f"run{round_no}", OF_WORKER_ID=f"counter-{round_no}"
            )

        def caught_up() -> bool:
            return all(r.xlen(keys.stream(s, "counts")) == produced for s in SYMBOLS)

        wait_for(caught_up, 60, "the restarted stage to catch up")
        time.sleep(0.5)  # anything extra written late would show below
        for s in SYMBOLS:
            actual = _actual(r, s)
            expected = _expected(r, s)
            assert len(actual) == produced
            assert actual == expected, f"{s}: output differs from the uninterrupted fold"
            last = codec.decode(actual[-1][1])
            assert isinstance(last, Trade)
            assert last.seq == produced
        assert kills == 4
        assert interrupted >= 2, "most kills must land while the stage is mid-stream"
        assert all(r.xlen(keys.dead_letters(s)) == 0 for s in SYMBOLS)
        assert stop(proc) == 0  # SIGTERM: final checkpoint acknowledges everything folded
        for s in SYMBOLS:
            assert r.xpending(keys.stream(s, "trades"), "counting")["pending"] == 0
            assert r.get(keys.lease(s, "counting")) is None
    finally:
        if proc.poll() is None:
            proc.kill()
        r.close()
