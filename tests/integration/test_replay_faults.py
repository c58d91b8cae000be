"""``ofx replay --ids derived`` through a Redis restart and through Redis refusing writes: it waits,
reconnects and ends with exactly the streams of an uninterrupted replay.

Each test runs its own redis-server (AOF on, restarted on the same port) so the shared server
is never stopped; the recording is the first minute of the real Binance BTCUSDT capture.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from tests.integration.test_replay_parts import OFX, REPO, SPOT_BTC
from tests.support.binance_frames import binance_to_bybit
from tests.support.servers import wait_for

from ofcommon import codec, keys
from ofcommon.embedded import EmbeddedServer, start_redis
from ofcommon.messages import Trade
from ofcommon.recording import RecordingWriter

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

TRADES = keys.stream("BTCUSDT", "trades")
BOOK = keys.stream("BTCUSDT", "book")
SPAN_NS = 60 * 1_000_000_000
SPEED = "20"  # the minute in about 3 s: long enough to be cut in the middle


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = start_redis(tmp_path / "redis", appendonly=True)
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()


def recording(out: Path) -> tuple[list[Path], list[str]]:
    """The capture's first minute as one recording, and its trade ids in order."""
    frames = list(binance_to_bybit())
    minute = [(r, f) for r, f in frames if r - frames[0][0] < SPAN_NS]
    with RecordingWriter(out, "bybit", "spot") as writer:
        for recv_ns, frame in minute:
            writer.write(recv_ns, frame)
    ids = [row["i"] for _, f in minute if b'"publicTrade.' in f for row in json.loads(f)["data"]]
    return writer.paths, ids


def start_replay(env: dict[str, str], paths: list[Path], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(OFX), "replay", *map(str, paths), "--ids", "derived", *extra],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return stats, err


def contents(client: sync_redis.Redis) -> dict[str, list[tuple[bytes, dict[bytes, bytes]]]]:
    return {s: client.xrange(s) for s in (TRADES, BOOK)}


def env_for(service_env: dict[str, str], server: EmbeddedServer, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "instruments.toml").write_text(SPOT_BTC)
    return {
        **service_env,
        "OF_REDIS_URL": server.url,
        "OF_REGISTRY_FILE": str(tmp_path / "instruments.toml"),
    }


def uninterrupted(env: dict[str, str], paths: list[Path], client: sync_redis.Redis) -> Any:
    client.flushdb()
    stats, _ = finish(start_replay(env, paths, "--speed", "max"))
    assert (stats["duplicates"], stats["holes"]) == (0, 0)
    return contents(client)


def test_replay_rides_out_a_redis_restart(
    service_env: dict[str, str], server: EmbeddedServer, tmp_path: Path
) -> None:
    env = env_for(service_env, server, tmp_path)
    paths, trade_ids = recording(tmp_path / "rec")
    client = sync_redis.Redis.from_url(server.url)
    try:
        proc = start_replay(env, paths, "--speed", SPEED)
        wait_for(lambda: client.xlen(TRADES) >= len(trade_ids) // 4, 60, "a quarter of the trades")
        server.stop()  # SIGTERM: the AOF keeps every write Redis acknowledged
        restarted = start_redis(server.data_dir, port=server.port, appendonly=True)
        try:
            stats, err = finish(proc)
            assert "retrying" in err  # it did meet the restart
            got = contents(client)
            tape = [codec.decode(f[codec.FIELD]) for _, f in got[TRADES]]
            assert all(isinstance(t, Trade) for t in tape)
            assert [t.trade_id for t in tape if isinstance(t, Trade)] == trade_ids
            assert stats["holes"] == 0
            assert got == uninterrupted(env, paths, client)
        finally:
            restarted.stop()
    finally:
        client.close()


def test_replay_waits_while_redis_refuses_writes(
    service_env: dict[str, str], server: EmbeddedServer, tmp_path: Path
) -> None:
    env = env_for(service_env, server, tmp_path)
    paths, trade_ids = recording(tmp_path / "rec")
    client = sync_redis.Redis.from_url(server.url)
    try:
        client.config_set("maxmemory-policy", "noeviction")
        proc = start_replay(env, paths, "--speed", SPEED)
        wait_for(lambda: client.xlen(TRADES) >= len(trade_ids) // 4, 60, "a quarter of the trades")
        client.config_set("maxmemory", "1")  # full: every write is refused (OOM)
        wait_for(lambda: oom_refusals(client) > 0, 60, "a write refused for memory")
        refused_at = client.xlen(TRADES)
        client.config_set("maxmemory", "0")
        stats, err = finish(proc)
        assert refused_at < len(trade_ids)
        assert "refuse" in err  # it met the refusals and said so
        got = contents(client)
        tape = [codec.decode(f[codec.FIELD]) for _, f in got[TRADES]]
        assert [t.trade_id for t in tape if isinstance(t, Trade)] == trade_ids
        assert (stats["holes"], stats["duplicates"]) == (0, 0)
        assert got == uninterrupted(env, paths, client)
    finally:
        client.close()


def oom_refusals(client: sync_redis.Redis) -> int:
    stat = client.info("errorstats").get("errorstat_OOM", {})
    return int(stat.get("count", 0)) if isinstance(stat, dict) else 0
