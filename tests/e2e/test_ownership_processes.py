"""Three workers of one stage share 30 instruments; one is SIGKILLed, the rest recover."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.servers import spawn_service, wait_for

from ofcommon import keys
from ofcommon.instruments import load_registry

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

STAGE = "patterns"  # a lease-only stage: ownership needs no database
SYMBOLS = [i.symbol for i in load_registry().all()][:30]


def _lease_owners(r: sync_redis.Redis) -> dict[str, str]:
    values = r.mget([keys.lease(s, STAGE) for s in SYMBOLS])
    return {s: v.decode().rsplit(":", 1)[0] for s, v in zip(SYMBOLS, values, strict=True) if v}


def _reported(r: sync_redis.Redis, workers: list[str]) -> dict[str, list[str]]:
    out = {}
    for w in workers:
        raw = r.get(keys.health(STAGE, w))
        if raw is not None:
            out[w] = json.loads(raw).get("owned", [])
    return out


def _balanced(r: sync_redis.Redis, live: list[str], loads: list[int]) -> dict[str, str] | None:
    owners = _settled(r, live)
    if owners is None or sorted(list(owners.values()).count(w) for w in live) != loads:
        return None
    return owners


def _settled(r: sync_redis.Redis, live: list[str]) -> dict[str, str] | None:
    owners = _lease_owners(r)
    if set(owners) != set(SYMBOLS) or not set(owners.values()) <= set(live):
        return None
    reported = _reported(r, live)
    if set(reported) != set(live):
        return None
    claimed = [s for w in live for s in reported[w]]
    if sorted(claimed) != sorted(SYMBOLS):  # each exactly once, all of them
        return None
    if any(owners[s] != w for w in live for s in reported[w]):
        return None
    return owners


def test_three_workers_share_and_recover(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {**service_env, "OF_INSTRUMENTS": ",".join(SYMBOLS), "OF_HEALTH_TTL_S": "2"}
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    names = ["w1", "w2", "w3"]
    procs = {n: spawn_service(STAGE, env, tmp_path, n, OF_WORKER_ID=n) for n in names}
    try:
        wait_for(lambda: _balanced(r, names, [10, 10, 10]), 30, "three workers to share 30")

        procs["w3"].send_signal(signal.SIGKILL)
        procs["w3"].wait()
        live = ["w1", "w2"]
        # Bounds only so a broken takeover fails instead of hanging; how fast is for bench/.
        wait_for(lambda: _settled(r, live), 60, "the survivors to take over w3's share")
        wait_for(lambda: _balanced(r, live, [15, 15]), 60, "an even split between two")

        procs["w4"] = spawn_service(STAGE, env, tmp_path, "w4", OF_WORKER_ID="w4")
        live = ["w1", "w2", "w4"]
        wait_for(lambda: _balanced(r, live, [10, 10, 10]), 30, "a joining worker's share")
    finally:
        # Every worker gets its SIGTERM at once, and one that hangs is killed without leaving the
        # others running (an orphan would keep consuming the next tests' streams).
        alive = {n: p for n, p in procs.items() if p.poll() is None}
        for p in alive.values():
            p.terminate()
        codes: dict[str, int | str] = {}
        for n, p in alive.items():
            try:
                codes[n] = p.wait(20)  # one SIGTERM only: a second one means "stop now"
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes[n] = "did not stop in time: killed"
        left = _lease_owners(r)
        r.close()
    assert all(code == 0 for code in codes.values()), codes
    assert left == {}  # clean stops release everything


def test_stop_is_clean(service_env: dict[str, str], tmp_path: Path) -> None:
    proc = spawn_service(STAGE, service_env, tmp_path, "solo", OF_WORKER_ID="solo")
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    try:
        wait_for(lambda: len(_lease_owners(r)) == 30, 30, "the solo worker to own everything")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert _lease_owners(r) == {}
        assert r.get(keys.health(STAGE, "solo")) is None
        assert r.zcard(keys.workers(STAGE)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        r.close()
