"""A running stage exposes Prometheus metrics: in/out, lag, latency, dead letters, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.servers import (
    free_port,
    metric_sum,
    scrape_metrics,
    spawn_service,
    stop,
    wait_for,
)

from ofcommon import codec, keys
from ofcommon.messages import Side, Trade

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def test_stage_metrics(service_env: dict[str, str], tmp_path: Path) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    stream = keys.stream("BTCUSDT", "trades")
    for i in range(50):
        r.xadd(stream, {b"d": codec.encode(Trade(i, i, 100.0, 1.0, Side.BUY, str(i)))})
    r.xadd(stream, {b"d": b"\xc1not-a-message"})
    port = free_port()
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
            lambda: (t := scrape_metrics(port)) and 'of_checkpoints_total{outcome="ok"' in t and t,
            30,
            "metrics after a checkpoint",
        )
        text = wait_for(
            lambda: (
                (t := scrape_metrics(port)) and metric_sum(t, "of_messages_out_total") >= 50 and t
            ),
            30,
            "all outputs counted",
        )
        assert metric_sum(text, 'of_dead_letters_total{reason="undecodable"') == 1
        assert metric_sum(text, "of_messages_in_total") == 51
        assert metric_sum(text, "of_processing_latency_seconds_count") >= 50
        assert metric_sum(text, "of_owned_instruments") == 1
        text = wait_for(
            lambda: (t := scrape_metrics(port)) and "of_stream_lag_entries{" in t and t,
            30,
            "lag gauge",
        )
        assert metric_sum(text, "of_stream_lag_entries") == 0
    finally:
        assert stop(proc) == 0
        r.close()
