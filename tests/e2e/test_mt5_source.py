"""`ofx run feed_mt5` beside a Bybit feed's claims: the instruments both venues list stay with
one source. By default MT5 leaves them to Bybit; one a registry file misassigns to MT5 while
Bybit holds its claim is refused with a log line and a metric, and nothing of it is written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from tests.support import fake_mt5_data as data
from tests.support.fake_mt5_server import control, serve
from tests.support.servers import (
    free_port,
    metric_sum,
    scrape_metrics,
    spawn_service,
    stop,
    wait_for,
)

from ofcommon import codec, keys
from ofcommon.messages import Trade

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

BYBIT_HOLDER = "bybit/feed-elsewhere"


def _trades(r: sync_redis.Redis, symbol: str) -> int:
    entries = r.xrange(keys.stream(symbol, "trades"))
    return sum(isinstance(codec.decode(fields[codec.FIELD]), Trade) for _, fields in entries)


def _health(r: sync_redis.Redis) -> dict[str, Any] | None:
    for key in r.scan_iter(match=keys.health_pattern("feed_mt5")):
        raw = r.get(key)
        if raw:
            report: dict[str, Any] = json.loads(raw)
            return report
    return None


def _connected(r: sync_redis.Redis) -> dict[str, Any] | None:
    report = _health(r)
    return report if report and report.get("connection") == "up" else None


def test_mt5_publishes_only_what_no_other_venue_holds(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    # The running Bybit feed's claim on gold (kept for the whole test).
    r.set(keys.source_claim("XAUUSDT"), BYBIT_HOLDER, px=300_000)
    registry = tmp_path / "instruments.toml"
    registry.write_text('[instruments.XAUUSDT]\nsource = "mt5"\n')  # the misconfiguration
    metrics_port = free_port()
    data.eurusd_quotes()  # fail here, not on the bridge, when the real data is absent
    with serve() as port:
        ctl = control(port)
        try:
            ctl.modules["tests.support.fake_mt5_data"].install_demo(
                int(time.time() * 1000) + 1_500, 120
            )
            proc = spawn_service(
                "feed_mt5",
                service_env,
                tmp_path,
                "feed_mt5",
                OF_MT5_BRIDGE_HOST="127.0.0.1",
                OF_MT5_BRIDGE_PORT=str(port),
                OF_MT5_LOGIN=str(data.DEMO_LOGIN),
                OF_MT5_PASSWORD=data.DEMO_PASSWORD,
                OF_MT5_SERVER=data.DEMO_SERVER,
                OF_MT5_POLL_MS="25",
                OF_MT5_HISTORY_DAYS="0.05",
                OF_INSTRUMENTS="EURUSD,BTCUSDT,XAUUSDT",
                OF_REGISTRY_FILE=str(registry),
                OF_METRICS_PORT=str(metrics_port),
                OF_WORKER_ID="mt5-1",
            )
            try:
                wait_for(lambda: _trades(r, "EURUSD") >= 20, 60, "EURUSD trades from MT5")
                report = wait_for(lambda: _connected(r), 30, "a health report, connected")
                refused = (
                    'of_source_refused_total{holder="bybit",service="feed_mt5",symbol="XAUUSDT"}'
                )
                text = wait_for(lambda: scrape_metrics(metrics_port), 10, "metrics")
                assert metric_sum(text, refused) == 1.0
                assert r.get(keys.source_claim("EURUSD")) == b"mt5/mt5-1"
            finally:
                assert stop(proc) == 0
        finally:
            ctl.close()

    assert report["source_refused"] == {"XAUUSDT": BYBIT_HOLDER}
    assert report["instruments"] == 1
    for symbol in ("BTCUSDT", "XAUUSDT"):
        for kind in ("trades", "book"):
            assert r.xlen(keys.stream(symbol, kind)) == 0, (symbol, kind)
    log = (tmp_path / "feed_mt5.log").read_text()
    assert "refusing to publish XAUUSDT" in log
    assert BYBIT_HOLDER in log
    assert r.get(keys.source_claim("XAUUSDT")) == BYBIT_HOLDER.encode()
    assert r.exists(keys.source_claim("EURUSD")) == 0  # released on the clean stop
    r.close()
