"""`make run` for real: embedded servers, every service healthy, Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ofcommon.localstack import DEFAULT_SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    # a fresh machine: no server URLs given, so the stack starts its embedded Redis and PostgreSQL
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
    started = time.monotonic()
    try:
        assert healthy.wait(60), "not every service healthy within 60 s:\n" + "".join(lines[-40:])
        took = time.monotonic() - started
        children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert len(children) >= len(DEFAULT_SERVICES) + 2  # every service, Redis and PostgreSQL
        assert "sim" not in DEFAULT_SERVICES
        for name in DEFAULT_SERVICES:
            assert any(line.lstrip().startswith(name) for line in lines), f"no output from {name}"
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
    assert took < 60
