"""The ofx command line, run as a real subprocess against a real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.servers import free_port, spawn_service, stop, wait_for

from ofcommon import codec, keys
from ofcommon.embedded import redis_server_binary
from ofcommon.messages import MESSAGE_TYPES, Side, Trade

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def ofx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ofcommon.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_schema_describes_every_type(service_env: dict[str, str]) -> None:
    out = ofx(service_env, "schema")
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert {t.__name__ for t in MESSAGE_TYPES} <= set(schema["$defs"])
    assert schema["x-wire-version"] >= 1


def test_config_redacts_secrets(service_env: dict[str, str]) -> None:
    env = {
        **service_env,
        "OF_REDIS_URL": "redis://:very-secret-pw@redis:6379/0",
        "OF_TELEGRAM_BOT_TOKEN": "123456:telegram-token-abc",
    }
    for svc in ("alerts", "analytics"):
        out = ofx(env, "config", svc)
        assert out.returncode == 0, out.stderr
        assert "very-secret-pw" not in out.stdout + out.stderr
        assert "telegram-token-abc" not in out.stdout + out.stderr
        assert "OF_REDIS_URL=redis://:***@redis:6379/0" in out.stdout
    alerts = json.loads(ofx(env, "config", "alerts", "--json").stdout)
    assert alerts["OF_TELEGRAM_BOT_TOKEN"] == "***"


def test_config_errors_are_precise(service_env: dict[str, str]) -> None:
    out = ofx({**service_env, "OF_LEASE_TTL_S": "zero"}, "config", "analytics")
    assert out.returncode == 2
    assert "OF_LEASE_TTL_S: expected float, got 'zero'" in out.stderr
    out = ofx({**service_env, "OF_INSTRUMENT": "crypto"}, "config", "analytics")
    assert out.returncode == 2
    assert "OF_INSTRUMENT: unknown variable (did you mean OF_INSTRUMENTS?)" in out.stderr


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own that requires a password: the URL, password included."""
    password = "redis-pw-never-logged"
    port = free_port()
    server = subprocess.Popen(
        [
            str(redis_server_binary()),
            *("--bind", "127.0.0.1", "--port", str(port), "--requirepass", password),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"

    def answers() -> bool:
        client = sync_redis.Redis.from_url(url, socket_timeout=1)
        try:
            return bool(client.ping())
        except sync_redis.RedisError:
            return False
        finally:
            client.close()

    try:
        wait_for(answers, 30, "the password-protected redis-server")
        yield url
    finally:
        server.terminate()
        server.wait(30)


def test_run_logs_never_contain_secrets(
    service_env: dict[str, str], password_redis: str, tmp_path: Path
) -> None:
    env = {**service_env, "OF_REDIS_URL": password_redis}
    password = "redis-pw-never-logged"
    token = "987654:do-not-print-me"
    noauth = password_redis.replace(f":{password}@", "@")
    denied = ofx({**service_env, "OF_REDIS_URL": noauth}, "check", "alerts")
    assert denied.returncode == 1  # the password matters
    assert "Redis unreachable" in denied.stderr
    proc = spawn_service(
        "alerts", env, tmp_path, "alerts", OF_TELEGRAM_BOT_TOKEN=token, OF_LOG_LEVEL="DEBUG"
    )
    try:
        wait_for(lambda: ofx(env, "check", "alerts").returncode == 0, 30, "alerts healthy")
    finally:
        assert stop(proc) == 0
    text = (tmp_path / "alerts.log").read_text()
    [started] = [json.loads(line) for line in text.splitlines() if '"msg": "started"' in line]
    host = password_redis.split("@", 1)[1]
    assert started["redis"] == f"redis://:***@{host}"  # which Redis, its password masked
    assert password not in text
    assert token not in text


def test_check_fails_without_a_live_worker(service_env: dict[str, str]) -> None:
    out = ofx(service_env, "check", "patterns")
    assert out.returncode == 1
    assert "no live worker" in out.stderr


def test_tail_and_streams(service_env: dict[str, str]) -> None:
    r = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    stream = keys.stream("BTCUSDT", "trades")
    ids = [
        r.xadd(
            stream, {b"d": codec.encode(Trade(i, i, 100.0 + i, 1.0, Side.BUY, f"t{i}"))}
        ).decode()
        for i in range(5)
    ]
    r.xadd(stream, {b"d": b"\xc1broken"})
    r.xgroup_create(stream, "analytics", id="0")
    r.close()

    out = ofx(service_env, "tail", stream, "--from", "0", "--count", "3")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["id"] for x in lines] == ids[:3]
    assert lines[0]["msg"]["k"] == "trade"
    assert lines[2]["msg"]["trade_id"] == "t2"

    last = [
        json.loads(x) for x in ofx(service_env, "tail", stream, "--count", "2").stdout.splitlines()
    ]
    assert last[0]["msg"]["trade_id"] == "t4"
    assert last[1]["error"].startswith("undecodable")

    out = ofx(service_env, "streams", "--json")
    rows = json.loads(out.stdout)
    [row] = [x for x in rows if x["stream"] == stream]
    assert row["length"] == 6
    assert row["first"] == ids[0]
    assert row["groups"]["analytics"]["lag"] == 6
