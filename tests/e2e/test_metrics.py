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
from ofcommon.db import migrate
from ofcommon.messages import Gap, Side, Trade

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


@pytest.mark.postgres
def test_analytics_exports_late_duplicate_and_gap_tallies(
    service_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    stream = keys.stream("BTCUSDT", "trades")
    t0 = 1_700_000_040 * 1_000_000_000
    msgs: list[Trade | Gap] = [
        Trade(t0, t0, 100.0, 1.0, Side.BUY, "a"),
        Trade(t0 + 1, t0 + 1, 100.0, 1.0, Side.BUY, "a"),  # the feed's retried write
        Gap(t0 + 2, t0 + 2, "trades", "seq jump"),
        Trade(t0 + 61_000_000_000, t0 + 61_000_000_000, 101.0, 2.0, Side.SELL, "b"),  # next bar
        Trade(t0 + 3, t0 + 3, 99.0, 0.5, Side.SELL, "c"),  # older than the open bar: late
    ]
    for m in msgs:
        r.xadd(stream, {b"d": codec.encode(m)})
    port = free_port()
    proc = spawn_service(
        "of_analytics.service:SERVICE",
        service_env,
        tmp_path,
        "a",
        OF_INSTRUMENTS="BTCUSDT",
        OF_METRICS_PORT=str(port),
        OF_DATABASE_URL=database_url,
        OF_CHECKPOINT_INTERVAL_S="0.2",
    )
    label = 'of_fold_events{name="%s",service="analytics",symbol="BTCUSDT"}'
    try:
        text = wait_for(
            lambda: (t := scrape_metrics(port)) and metric_sum(t, label % "late_trades") and t,
            30,
            "tallies after a checkpoint",
        )
        assert metric_sum(text, label % "late_trades") == 1
        assert metric_sum(text, label % "late_volume") == 0.5
        assert metric_sum(text, label % "duplicate_trades") == 1
        assert metric_sum(text, label % "trade_gaps") == 1
        assert metric_sum(text, label % "consumption_forced") == 0
    finally:
        assert stop(proc) == 0
        r.close()
