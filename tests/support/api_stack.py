"""A running pipeline for the API tests: the simulator (or a test's own writer), analytics,
patterns, aggregator and the API as real ``ofx run`` subprocesses on the test's Redis and
PostgreSQL, and the wait until every consumer group has caught up."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis as sync_redis

from ofcommon import keys
from ofcommon.db import migrate
from tests.support.servers import free_port, spawn_service, stop, wait_for

TOKEN = "test-token-7f3a"


@dataclass
class Stack:
    url: str
    token: str
    redis_url: str
    database_url: str
    symbols: tuple[str, ...]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


# The consumer group each stage keeps on its input streams.
STAGE_INPUTS = {
    "analytics": ("trades", "book"),
    "patterns": ("bars", "bookstats", "consumption"),
    "aggregator": ("bars", "profile", "patterns"),
}


def caught_up(r: sync_redis.Redis, symbols: Sequence[str], stages: Sequence[str]) -> bool:
    """Every consumer group on every stream of ``symbols`` has no lag and nothing pending, and
    each of ``stages`` has its group on each of its input streams that has entries."""
    for s in symbols:
        for kind in keys.STREAM_KINDS:
            name = keys.stream(s, kind)
            if not r.exists(name):
                continue
            groups = {g["name"].decode(): g for g in r.xinfo_groups(name)}
            for stage in stages:
                if kind in STAGE_INPUTS.get(stage, ()) and stage not in groups:
                    return False
            for g in groups.values():
                if (g.get("lag") or 0) > 0 or g["pending"] > 0:
                    return False
    return True


def total_entries(r: sync_redis.Redis, symbols: Sequence[str]) -> int:
    return sum(r.xlen(keys.stream(s, k)) for s in symbols for k in keys.STREAM_KINDS)


def wait_quiet(
    r: sync_redis.Redis, symbols: Sequence[str], timeout: float, stages: Sequence[str] = ()
) -> None:
    """Until the streams stop growing and every group has caught up (checked 3 s apart)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = total_entries(r, symbols)
        if now == last and now > 0 and caught_up(r, symbols, stages):
            return
        last = now
        time.sleep(3)
    raise AssertionError(f"the pipeline did not settle within {timeout:.0f} s")


def start_api(
    env: dict[str, str], log_dir: Path, symbols: Sequence[str], **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = spawn_service(
        "api",
        env,
        log_dir,
        "api",
        OF_API_TOKEN=TOKEN,
        OF_API_PORT=str(port),
        OF_INSTRUMENTS=",".join(symbols),
        **extra,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"api exited with {proc.returncode}; see {log_dir}/api.log")
        try:
            return httpx.get(url + "/healthz", timeout=2).json().get("hub_ready") is True
        except httpx.HTTPError:
            return False

    wait_for(healthy, 60, "the api to serve")
    return proc, url


@contextlib.contextmanager
def pipeline(
    env: dict[str, str],
    database_url: str,
    log_dir: Path,
    symbols: Sequence[str],
    *,
    sim: dict[str, str] | None,
    stages: Sequence[str] = ("analytics", "patterns", "aggregator"),
    settle_s: float = 240,
) -> Iterator[Stack]:
    """The stages (and the simulator when ``sim`` gives its settings) run until the streams
    settle; then the API starts and the stack is yielded. Everything is stopped afterwards."""
    migrate(database_url)
    env = {**env, "OF_DATABASE_URL": database_url, "OF_INSTRUMENTS": ",".join(symbols)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    r = sync_redis.Redis.from_url(env["OF_REDIS_URL"])
    try:
        for name in stages:
            procs[name] = spawn_service(name, env, log_dir, name)
        if sim is not None:
            procs["sim"] = spawn_service(
                "sim", env, log_dir, "sim", OF_SIM_INSTRUMENTS=",".join(symbols), **sim
            )
        if stages or sim is not None:
            wait_quiet(r, symbols, settle_s, stages)
        api, url = start_api(env, log_dir, symbols)
        procs["api"] = api
        yield Stack(url, TOKEN, env["OF_REDIS_URL"], database_url, tuple(symbols), procs)
    finally:
        for proc in procs.values():
            with contextlib.suppress(Exception):
                stop(proc)
        r.close()
