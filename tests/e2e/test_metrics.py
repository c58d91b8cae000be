"""A running stage exposes Prometheus metrics: in/out, lag, latency, dead letters, checkpoints."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.servers import spawn_service, stop, wait_for

from ofcommon import codec, keys
from ofcommon.messages import Side, Trade

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _value(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_stage_metrics(service_env: dict[str, str], tmp_path: Path) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    stream = keys.stream("BTCUSDT", "trades")
    for i in range(50):
        r.xadd(stream, {b"d": codec.encode(Trade(i, i, 100.0, 1.0, Side.BUY, str(i)))})
    r.xadd(stream, {b"d": b"\xc1not-a-message"})
    port = _free_port()
    proc = spawn_service(
        "tests.support.counting:SERVICE",
        service_env,
        tmp_path,
        "m",
        OF_INSTRUMENTS="BTCUSDT",
        OF_METRICS_PORT=str(port),
    )
    try:
        text = wait_for(
            lambda: (t := _scrape(port)) and 'of_checkpoints_total{outcome="ok"' in t and t,
            30,
            "metrics after a checkpoint",
        )
        text = wait_for(
            lambda: (t := _scrape(port)) and _value(t, "of_messages_out_total") >= 50 and t,
            30,
            "all outputs counted",
        )
        assert _value(text, 'of_dead_letters_total{reason="undecodable"') == 1
        assert _value(text, "of_messages_in_total") == 51
        assert _value(text, "of_processing_latency_seconds_count") >= 50
        assert _value(text, "of_owned_instruments") == 1
        text = wait_for(
            lambda: (t := _scrape(port)) and "of_stream_lag_entries{" in t and t, 30, "lag gauge"
        )
        assert _value(text, "of_stream_lag_entries") == 0
    finally:
        assert stop(proc) == 0
        r.close()
