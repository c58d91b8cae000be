"""`make run` for real: embedded servers, every service healthy, Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from tests.support.servers import free_port

from ofcommon.localstack import DEFAULT_SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
_API_PORT = free_port()


def _env() -> dict[str, str]:
    # a fresh machine: no server URLs given, so the stack starts its embedded Redis and PostgreSQL
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["OF_API_PORT"] = str(_API_PORT)  # not 8080: other stacks on this machine may hold it
    return env


def _second_terminal(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ofcommon.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _leftovers(var_dir: Path, pids: set[int]) -> list[str]:
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["pid"] in pids or str(var_dir) in cmd:
            left.append(f"{proc.info['pid']}: {cmd}")
    return left


def test_every_service_healthy_then_ctrl_c_leaves_nothing(free_tmp: Path) -> None:
    var_dir = free_tmp / "var"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ofcommon.cli", "up", "--var-dir", str(var_dir)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    healthy = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "healthy" in line and "all" in line:
                healthy.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        # A bound so a broken start fails instead of hanging; the start time is for bench/.
        assert healthy.wait(180), "not every service healthy:\n" + "".join(lines[-40:])
        children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert len(children) >= len(DEFAULT_SERVICES) + 2  # every service, Redis and PostgreSQL
        assert "sim" not in DEFAULT_SERVICES
        for name in DEFAULT_SERVICES:
            assert any(line.lstrip().startswith(name) for line in lines), f"no output from {name}"
        # A second terminal in the folder that holds var/, without any OF_* variable.
        second = _second_terminal(free_tmp, "check", "analytics")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout.splitlines()[0])["service"] == "analytics"
        assert f"(ofx up, pid {proc.pid})" in second.stderr
        [announced] = [line for line in lines if "| redis " in line]
        redis_url = announced.split("|", 1)[1].split()[1]
        client = redis.Redis.from_url(redis_url)
        try:
            client.xadd("of:{NOSUCH}:trades", {"d": b"x"})  # no stage consumes an unknown symbol
        finally:
            client.close()
        streams = _second_terminal(free_tmp, "streams", "--json")
        assert streams.returncode == 0, streams.stderr
        rows = {row["stream"]: row for row in json.loads(streams.stdout)}
        assert rows["of:{NOSUCH}:trades"]["length"] == 1
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
        assert proc.wait(60) == 0
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while _leftovers(var_dir, children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(var_dir, children) == []
    assert not (var_dir / "stack.json").exists()
