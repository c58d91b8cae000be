"""The local-stack supervisor runs servers and services, restarts crashes and leaves nothing behind.

Runs ofcommon.localstack.main in a subprocess with stand-in services and a Redis health check.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.e2e]

# Stand-in for `ofx run <svc>`: reports health through the Redis it was given, then idles until
# SIGTERM. Behaviour per service comes from argv so one script covers every case.
CHILD = r"""
import os, signal, sys, time
import redis

service, mode, marker = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"{service} up parent={os.environ['OF_PARENT_PID']}", flush=True)
if mode == "crash-once" and not os.path.exists(marker):
    open(marker, "w").close()
    print(f"{service} crashing", flush=True)
    sys.exit(3)
stopping = False
def on_term(signum, frame):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "ignore-term" else on_term)
assert os.environ["OF_DATABASE_URL"].startswith("postgresql+psycopg://")
client = redis.Redis.from_url(os.environ["OF_REDIS_URL"])
client.set(f"test:health:{service}", os.getpid())
client.close()
while not stopping:
    time.sleep(0.05)
print(f"{service} stopping on SIGTERM", file=sys.stderr, flush=True)
if mode == "slow-term":  # a real service checkpoints and releases before it exits
    time.sleep(1.0)
    print(f"{service} stopped", flush=True)
"""

DRIVER = r"""
import sys
import redis
from ofcommon import localstack

child, marker_dir = sys.argv[1], sys.argv[3]
modes = dict(pair.split("=") for pair in sys.argv[2].split(",") if pair)

def command(service):
    mode = modes.get(service, "normal")
    return [sys.executable, child, service, mode, f"{marker_dir}/{service}.crashed"]

def healthy(service, env):
    client = redis.Redis.from_url(env["OF_REDIS_URL"])
    try:
        return client.get(f"test:health:{service}") is not None
    finally:
        client.close()

sys.exit(localstack.main(sys.argv[4:], child_command=command, health_check=healthy))
"""


class Supervisor:
    """The supervisor subprocess with its output collected line by line."""

    def __init__(self, tmp_path: Path, modes: str, args: list[str]) -> None:
        (tmp_path / "child.py").write_text(CHILD)
        (tmp_path / "driver.py").write_text(DRIVER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
        env.pop("FORCE_COLOR", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "driver.py"),
                str(tmp_path / "child.py"),
                modes,
                str(tmp_path),
                *args,
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        return list(psutil.Process(self.process.pid).children(recursive=True))


StartSupervisor = Callable[[str, list[str]], Supervisor]


@pytest.fixture
def run_supervisor(free_tmp: Path) -> Iterator[StartSupervisor]:
    tmp_path = free_tmp  # the stack's embedded PostgreSQL must traverse it (see conftest)
    started: list[Supervisor] = []

    def factory(modes: str, args: list[str]) -> Supervisor:
        supervisor = Supervisor(tmp_path, modes, args)
        started.append(supervisor)
        return supervisor

    yield factory
    for supervisor in started:
        if supervisor.process.poll() is None:
            # A failed test must still not leak the stack: the supervisor's finally cleans up.
            supervisor.process.send_signal(signal.SIGTERM)
            try:
                supervisor.process.wait(20)
            except subprocess.TimeoutExpired:
                supervisor.process.kill()
                supervisor.process.wait()
        supervisor.finish()


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _leftovers(tmp_path: Path, timeout: float = 5.0) -> list[str]:
    """Live processes whose command line or working directory lies under tmp_path."""
    marker = str(tmp_path)
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
            info = proc.info
            if info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
            if marker in text:
                found.append(f"{info['pid']}: {text}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _names(procs: list[psutil.Process]) -> set[str]:
    """Executable names plus script names (Redis rewrites its argv, so use the kernel's comm)."""
    names = set()
    for proc in procs:
        try:
            names.add(proc.name())
            names.update(Path(arg).name for arg in proc.cmdline()[1:2])
        except psutil.NoSuchProcess:
            pass
    return names


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_services_then_servers_and_exits_zero(
    run_supervisor: StartSupervisor, free_tmp: Path, stop_signal: signal.Signals
) -> None:
    supervisor = run_supervisor("", ["--services", "analytics,patterns,api"])
    supervisor.wait_for(r"all 3 services healthy after \d+\.\ds")
    processes = supervisor.descendants()
    names = _names(processes)
    assert {"redis-server", "postgres", "child.py"} <= names, names

    supervisor.process.send_signal(stop_signal)
    assert supervisor.finish() == 0, supervisor.output

    assert not [proc for proc in processes if _running(proc)]
    assert _leftovers(free_tmp) == []
    output = supervisor.output
    assert f"received {stop_signal.name}, stopping" in output
    # Fixed-width prefix: the longest name ("analytics") sets the column.
    assert "api       | api stopping on SIGTERM" in output
    assert f"api       | api up parent={supervisor.process.pid}" in output
    assert "ofx       | servers stopped" in output
    assert "api stopping on SIGTERM" in (free_tmp / "var/logs/api.log").read_text()
    assert (free_tmp / "var/redis/appendonly.aof").exists()
    assert (free_tmp / "var/postgres/pgdata/PG_VERSION").exists()


def test_crashed_service_is_restarted_and_stragglers_are_killed(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    supervisor = run_supervisor(
        "analytics=crash-once,patterns=ignore-term",
        ["--services", "analytics,patterns", "--until-healthy", "--stop-timeout", "1"],
    )
    supervisor.wait_for(r"analytics exited unexpectedly \(exit code 3\); restarting in 1s")
    supervisor.wait_for(r"all 2 services healthy")
    assert supervisor.finish() == 0, supervisor.output

    assert "killing patterns: still running after SIGTERM" in supervisor.output
    assert supervisor.output.count("started analytics") == 2
    assert _leftovers(free_tmp) == []


def _stack_url(supervisor: Supervisor, name: str) -> str:
    """The URL the supervisor announced for its embedded `name` server."""
    line = supervisor.wait_for(rf"\| {name} +\S+://")
    return line.split("|", 1)[1].split()[1]


def _server_pid(supervisor: Supervisor, comm: str) -> int:
    [pid] = [p.pid for p in supervisor.descendants() if _is_server(p, comm)]
    return pid


def _is_server(proc: psutil.Process, comm: str) -> bool:
    """The server's own process, not one of the backends it forks (which come and go)."""
    try:
        parent = proc.parent()
        return proc.name() == comm and parent is not None and parent.name() != comm
    except psutil.NoSuchProcess:
        return False


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            return conn.execute("SELECT 41 + 1").fetchone() == (42,)
    except psycopg.OperationalError:
        return False


def test_dead_servers_are_restarted_on_their_ports(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    supervisor = run_supervisor("", ["--services", "api"])
    redis_url = _stack_url(supervisor, "redis")
    pg_url = _stack_url(supervisor, "postgres")
    supervisor.wait_for(r"all 1 services healthy")

    for name, comm, answers, url in (
        ("redis", "redis-server", _redis_answers, redis_url),
        ("postgres", "postgres", _postgres_answers, pg_url),
    ):
        old = _server_pid(supervisor, comm)
        os.kill(old, signal.SIGKILL)
        port = url.rsplit(":", 1)[1].split("/")[0]
        supervisor.wait_for(
            rf"{name} \(pid {old}\) died \(killed by SIGKILL\); restarting it on port {port}"
        )
        supervisor.wait_for(rf"{name} restarted \(pid \d+")
        assert answers(url), f"{name} does not answer on {url} after its restart"
        assert _server_pid(supervisor, comm) != old

    assert supervisor.process.poll() is None
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.finish() == 0, supervisor.output
    assert _leftovers(free_tmp) == []


def test_second_stack_refuses_and_leaves_the_first_alone(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    first = run_supervisor("", ["--services", "api"])
    redis_url = _stack_url(first, "redis")
    first.wait_for(r"all 1 services healthy")
    redis_pid = _server_pid(first, "redis-server")

    second = run_supervisor("", ["--services", "api", "--until-healthy"])
    assert second.finish() == 1, second.output
    assert f"another local stack (pid {first.process.pid}) is running" in second.output
    assert "started api" not in second.output

    assert _server_pid(first, "redis-server") == redis_pid
    assert _redis_answers(redis_url)
    assert first.process.poll() is None
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 0, first.output


def test_ofx_commands_from_another_terminal_find_the_stack(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    supervisor = run_supervisor("", ["--services", "api"])
    redis_url = _stack_url(supervisor, "redis")
    supervisor.wait_for(r"all 1 services healthy")
    client = redis.Redis.from_url(redis_url)
    try:
        client.xadd("of:{BTCUSDT}:trades", {"d": b"x"})
    finally:
        client.close()

    # A second terminal in the same folder: no OF_* variable at all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    ofx = [sys.executable, "-m", "ofcommon.cli", "streams", "--json"]
    done = subprocess.run(
        ofx, cwd=free_tmp, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [row["stream"] for row in json.loads(done.stdout)] == ["of:{BTCUSDT}:trades"]
    assert f"pid {supervisor.process.pid}" in done.stderr
    assert redis_url in done.stderr

    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.finish() == 0, supervisor.output
    # `config` resolves the URLs without connecting (the default Redis is not ours to scan).
    config = [sys.executable, "-m", "ofcommon.cli", "config", "api"]
    after = subprocess.run(
        config, cwd=free_tmp, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "no local stack runs on ./var" in after.stderr


def test_a_server_that_keeps_dying_stops_the_stack_saying_why(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    supervisor = run_supervisor("", ["--services", "api"])
    supervisor.wait_for(r"all 1 services healthy")
    for _ in range(3):  # three restarts within a minute are allowed...
        os.kill(_server_pid(supervisor, "redis-server"), signal.SIGKILL)
        supervisor.wait_for(r"redis restarted \(pid \d+")
    os.kill(_server_pid(supervisor, "redis-server"), signal.SIGKILL)  # ...a fourth death is not

    assert supervisor.finish() == 1, supervisor.output
    assert re.search(
        r"redis \(pid \d+\) died \(killed by SIGKILL\) 4 times within 60s; stopping the stack"
        r" \(see .*/var/redis/redis.log\)",
        supervisor.output,
    ), supervisor.output
    assert "api stopping on SIGTERM" in supervisor.output  # the services were stopped first
    assert _leftovers(free_tmp) == []


def test_one_ctrl_c_delivered_twice_still_stops_cleanly(
    run_supervisor: StartSupervisor, free_tmp: Path
) -> None:
    # Ctrl-C on `make run` reaches ofx from the terminal and again forwarded by `uv run`.
    modes = "analytics=slow-term,api=slow-term"
    supervisor = run_supervisor(modes, ["--services", "analytics,api"])
    supervisor.wait_for(r"all 2 services healthy")
    supervisor.process.send_signal(signal.SIGINT)
    supervisor.process.send_signal(signal.SIGINT)

    assert supervisor.finish() == 0, supervisor.output
    assert "killing" not in supervisor.output
    assert "api stopping on SIGTERM" in supervisor.output
    assert "analytics stopping on SIGTERM" in supervisor.output
    assert "api       | api stopped" in supervisor.output  # not killed halfway
    assert _leftovers(free_tmp) == []
