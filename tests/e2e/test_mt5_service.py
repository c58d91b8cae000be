"""``ofx run feed_mt5`` as a real process: health reported by the runner with the connection
state, through a fake-MT5 bridge, and up-but-unavailable without one; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from tests.support.fake_mt5_server import control, serve
from tests.support.servers import spawn_service, stop, wait_for

from ofcommon import keys

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

NOW = 1_723_161_255_000


def health(r: sync_redis.Redis) -> dict[str, Any] | None:
    for key in r.scan_iter(match=keys.health_pattern("feed_mt5")):
        raw = r.get(key)
        if raw:
            report: dict[str, Any] = json.loads(raw)
            return report
    return None


def test_feed_service_reports_its_bridge_connection_in_health(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    with serve() as port:
        ctl = control(port)
        try:
            fm = ctl.modules["tests.support.fake_mt5"]
            fm.install(fm.small_terminal(NOW, login=9, password="hunter2-s3cret"))
            proc = spawn_service(
                "feed_mt5",
                service_env,
                tmp_path,
                "feed_mt5",
                OF_MT5_BRIDGE_HOST="127.0.0.1",
                OF_MT5_BRIDGE_PORT=str(port),
                OF_MT5_LOGIN="9",
                OF_MT5_PASSWORD="hunter2-s3cret",
                OF_MT5_SERVER_OFFSET_MIN="+120",
                OF_MT5_HISTORY_DAYS="0",
                OF_INSTRUMENTS="EURUSD,GBPUSD",
            )
            try:

                def up() -> dict[str, Any] | None:
                    report = health(r)
                    return report if report and report.get("connection") == "up" else None

                report = wait_for(up, 60, "feed_mt5 healthy and connected")
                assert report["client"] == f"bridge 127.0.0.1:{port}"
                assert report["symbols"] == {"EURUSD": "EURUSDm"}
                assert report["missing"] == ["GBPUSD"]
                assert report["clock"] == "+120"
            finally:
                assert stop(proc) == 0
        finally:
            ctl.close()
    log = (tmp_path / "feed_mt5.log").read_text()
    assert "hunter2-s3cret" not in log  # the secret never reaches the log


def test_without_a_bridge_on_linux_the_service_stays_up_and_says_why(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    proc = spawn_service("feed_mt5", service_env, tmp_path, "feed_mt5", OF_INSTRUMENTS="forex")
    try:

        def unavailable() -> dict[str, Any] | None:
            report = health(r)
            return report if report and report.get("connection") == "unavailable" else None

        report = wait_for(unavailable, 60, "feed_mt5 reporting it is unavailable")
        assert "OF_MT5_BRIDGE_HOST" in report["error"]
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
