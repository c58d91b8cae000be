"""The sim service against a real Redis: the streams receive exactly the simulated run, a restart
resumes without repeats, pacing follows event time, and ``ofx run sim`` works as a process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.support.servers import spawn_service, stop, wait_for

from ofcommon import codec, keys
from ofcommon.messages import Side, Trade
from ofcommon.service import ServiceContext
from ofcommon.settings import load_settings
from ofcommon.simulator import Label, simulate
from ofcommon.simulator.labels import encode_label
from ofcommon.simulator.service import SimSettings, main

pytestmark = pytest.mark.redis

SYMBOLS = ("BTCUSDT", "EURUSD", "NAS100USDT")


def settings(labels: Path, **env: str) -> SimSettings:
    base = {
        "OF_SIM_SPEED": "max",
        "OF_SIM_DURATION_S": "300",
        "OF_SIM_EPISODE_GAP_S": "60",
        "OF_SIM_LABELS_PATH": str(labels),
    }
    base.update({f"OF_{k.upper()}": v for k, v in env.items()})
    return load_settings(SimSettings, base)


def expected(s: SimSettings) -> tuple[dict[str, list[bytes]], list[bytes]]:
    """What the streams and the labels file must hold: the pure generator's output."""
    streams: dict[str, list[bytes]] = defaultdict(list)
    labels: list[bytes] = []
    for item in simulate(s.config(s.instruments_to_run())):
        if isinstance(item, Label):
            labels.append(encode_label(item))
        else:
            streams[keys.stream(item.symbol, item.kind)].append(codec.encode(item.msg))
    return streams, labels


async def stream_contents(redis: aioredis.Redis) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for symbol in SYMBOLS:
        for kind in ("trades", "book"):
            key = keys.stream(symbol, kind)
            out[key] = [fields[codec.FIELD] for _, fields in await redis.xrange(key)]
    return out


def context(redis: aioredis.Redis, s: SimSettings) -> ServiceContext[SimSettings]:
    return ServiceContext(name="sim", settings=s, redis=redis, worker_id="t", stop=asyncio.Event())


async def until(predicate: Callable[[], object], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def run_to_end(ctx: ServiceContext[SimSettings]) -> None:
    task = asyncio.create_task(main(ctx))
    await until(lambda: ctx.status.get("done") or task.done())
    ctx.stop.set()
    await asyncio.wait_for(task, 10)


async def test_the_streams_receive_exactly_the_simulated_run(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    s = settings(tmp_path / "sim" / "labels.jsonl")
    ctx = context(redis, s)
    await run_to_end(ctx)
    want_streams, want_labels = expected(s)
    assert await stream_contents(redis) == want_streams
    assert (tmp_path / "sim" / "labels.jsonl").read_bytes() == b"".join(want_labels)
    assert want_labels  # episodes happened within the five minutes
    assert ctx.status["published"] == sum(len(v) for v in want_streams.values())
    assert ctx.status["labels"] == len(want_labels)
    assert ctx.status["done"] is True


async def test_a_restart_resumes_after_the_last_entry(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    s = settings(tmp_path / "labels.jsonl")
    first = context(redis, s)
    task = asyncio.create_task(main(first))
    await until(lambda: first.status.get("published", 0) >= 5000)
    first.stop.set()  # as SIGTERM would, mid-run
    await asyncio.wait_for(task, 10)
    assert first.status["done"] is False
    second = context(redis, s)
    await run_to_end(second)
    want_streams, want_labels = expected(s)
    assert await stream_contents(redis) == want_streams  # nothing repeated, nothing lost
    assert second.status["skipped"] >= 5000
    assert (tmp_path / "labels.jsonl").read_bytes() == b"".join(want_labels)


async def test_a_stream_written_by_someone_else_is_not_resumed(
    redis: aioredis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = keys.stream("EURUSD", "trades")
    foreign = Trade(2_000_000_000_000_000_000, 2_000_000_000_000_000_000, 1.1, 1.0, Side.BUY, "x1")
    await redis.xadd(stream, {codec.FIELD: codec.encode(foreign)})
    s = settings(tmp_path / "labels.jsonl", sim_instruments="EURUSD", sim_duration_s="30")
    with caplog.at_level(logging.WARNING):
        await run_to_end(context(redis, s))
    want, _ = expected(s)
    assert len(await redis.xrange(stream)) == 1 + len(want[stream])
    assert "did not write" in caplog.text


async def test_real_time_pacing_follows_event_time_and_stops_promptly(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    s = settings(tmp_path / "l.jsonl", sim_speed="30", sim_duration_s="30")
    started = time.monotonic()
    await run_to_end(context(redis, s))
    assert time.monotonic() - started >= 0.9  # 30 s of event time at 30x: never faster
    assert await stream_contents(redis) == expected(s)[0]

    endless = context(redis, settings(tmp_path / "m.jsonl", sim_speed="1", sim_duration_s="0"))
    task = asyncio.create_task(main(endless))
    await until(lambda: endless.status.get("published", 0) > 0)
    endless.stop.set()
    await asyncio.wait_for(task, 5)
    assert endless.status["done"] is False


def test_ofx_run_sim_fills_the_streams(service_env: dict[str, str], tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    proc = spawn_service(
        "sim",
        service_env,
        tmp_path / "logs",
        "sim",
        OF_SIM_SPEED="max",
        OF_SIM_DURATION_S="120",
        OF_SIM_EPISODE_GAP_S="60",
        OF_SIM_LABELS_PATH=str(labels),
        OF_HEALTH_TTL_S="3",
    )
    client = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    try:

        def done() -> bool:
            for key in client.scan_iter(match=keys.health_pattern("sim")):
                raw = client.get(key)
                if raw is not None and json.loads(raw).get("done"):
                    return True
            return False

        wait_for(done, 45, "the sim service to finish its run")
        s = settings(labels, sim_duration_s="120")
        want, want_labels = expected(s)
        for stream, entries in want.items():
            assert client.xlen(stream) == len(entries), stream
        assert labels.read_bytes() == b"".join(want_labels)
    finally:
        code = stop(proc)
        client.close()
    assert code == 0, (tmp_path / "logs" / "sim.log").read_text()
