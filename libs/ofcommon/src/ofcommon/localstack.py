"""The local stack behind `make run` / `ofx up`: embedded Redis and PostgreSQL plus every service.

Supervises the services as child processes: prefixed output, health report, restarts, clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Final, TextIO

from ofcommon.service import names
from ofcommon.stackfile import DEFAULT_VAR_DIR, StackLock, StackRunningError
from ofcommon.stackservers import ServerFailure, StackServers, describe_exit

__all__ = [
    "DEFAULT_SERVICES",
    "SERVICES",
    "ChildCommand",
    "HealthCheck",
    "main",
    "redis_health_check",
    "service_command",
]

SERVICES: Final = names()
# The simulator writes into the same streams as the live feeds: only `make demo` asks for it.
DEFAULT_SERVICES: Final = tuple(s for s in SERVICES if s != "sim")

ChildCommand = Callable[[str], Sequence[str]]
"""Builds the argv that runs one service; tests substitute their own."""

HealthCheck = Callable[[str, Mapping[str, str]], bool]
"""(service, environment of the children) -> is a worker of that service healthy?"""

SUPERVISOR_NAME: Final = "ofx"
MAX_RESTARTS_PER_MINUTE: Final = 5
MAX_BACKOFF: Final = 30.0
HEALTH_POLL_INTERVAL: Final = 0.25
CHECK_TIMEOUT: Final = 5.0
SAME_SIGNAL_WINDOW_S: Final = 1.0
"""Signals this close to the first one are the same stop request (see _StopRequest)."""
_TICK: Final = 0.1

_COLOURS: Final = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")
_RESET: Final = "\033[0m"


def service_command(service: str) -> list[str]:
    """The real child: `ofx run <service>` through the interpreter running the supervisor."""
    return [sys.executable, "-m", "ofcommon.cli", "run", service]


def redis_health_check(service: str, env: Mapping[str, str]) -> bool:
    """What `ofx check <service>` asks (a fresh health key of a worker on this host), in-process:
    a check subprocess costs seconds of interpreter start on a busy 2-core machine."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from ofcommon import health

    async def ask() -> bool:
        client = aioredis.Redis.from_url(
            env["OF_REDIS_URL"], socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
        )
        try:
            return bool(await health.check(client, service))
        except (OSError, RedisError):
            return False
        finally:
            await client.aclose()

    return asyncio.run(ask())


def main(
    argv: list[str] | None = None,
    *,
    child_command: ChildCommand = service_command,
    health_check: HealthCheck = redis_health_check,
    out: TextIO | None = None,
) -> int:
    """Run the stack until SIGINT/SIGTERM (exit 0), or until healthy with --until-healthy."""
    args = _parse_args(argv)
    started = time.monotonic()
    console = _Console(out or sys.stdout, [SUPERVISOR_NAME, *args.services])
    stop = _StopRequest()
    previous_handlers = _install_signal_handlers(stop)
    var_dir: Path = args.var_dir.resolve()
    lock = StackLock(var_dir)
    servers = StackServers(var_dir, info=console.info, error=console.error)
    supervisor: _Supervisor | None = None
    try:
        # Before anything touches var/: a second stack must not take over the first one's
        # servers as "stale".
        lock.acquire()
        # SQLAlchemy and Alembic take a second or more to import on a busy machine: load them
        # while the servers boot (mostly waiting), not after.
        preload = threading.Thread(target=_import_migrations, name="preload", daemon=True)
        preload.start()
        redis_url, database_url = servers.start(
            redis=not os.environ.get("OF_REDIS_URL"),
            postgres=not os.environ.get("OF_DATABASE_URL"),
        )
        redis_url = redis_url or os.environ["OF_REDIS_URL"]
        database_url = database_url or os.environ["OF_DATABASE_URL"]
        if stop.requested:
            console.info(f"received {stop.signal_name}, stopping")
            return 0
        phases = {"servers": time.monotonic() - started}
        preload.join()
        from ofcommon.db import migrate

        migrate(database_url)
        phases["migrations"] = time.monotonic() - started - phases["servers"]
        lock.write_urls(servers.url("redis"), servers.url("postgres"))
        env = _child_env(redis_url, database_url)
        # Only the simulator knows this variable; given to every child it would make each one
        # import every service to tell it from a typo (see known_setting_fields).
        sim_env = {"OF_SIM_LABELS_PATH": str(var_dir / "sim" / "labels.jsonl")}
        service_env: dict[str, Mapping[str, str]] = {"sim": {**sim_env, **env}}
        if "api" in args.services:
            service_env["api"] = _api_env(var_dir, env, console)
        supervisor = _Supervisor(
            args.services,
            command=child_command,
            env=env,
            service_env=service_env,
            console=console,
            log_dir=var_dir / "logs",
        )
        supervisor.start_all()
        return _supervise(supervisor, servers, health_check, stop, args, started, phases)
    except (StackRunningError, ServerFailure) as exc:
        console.error(str(exc))
        return 1
    except Exception as exc:
        console.error(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        # Services first (they flush to Redis/PostgreSQL on the way out), then the servers.
        if supervisor is not None:
            supervisor.shutdown(args.stop_timeout, stop)
        if servers.stop_all():
            console.info("servers stopped")
        lock.release()
        _restore_signal_handlers(previous_handlers)


def _import_migrations() -> None:
    with contextlib.suppress(ImportError):  # migrate() then raises it where it is reported
        import alembic.command
        import alembic.runtime.migration  # noqa: F401

        import ofcommon.db  # noqa: F401


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ofx up",
        description="Run embedded Redis and PostgreSQL and every OrderFlow service locally.",
    )
    parser.add_argument(
        "--services",
        type=_service_list,
        default=list(DEFAULT_SERVICES),
        help=f"comma-separated services to run (default: {','.join(DEFAULT_SERVICES)})",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=DEFAULT_VAR_DIR,
        help="data directory: redis/, postgres/, logs/ (default: ./var)",
    )
    parser.add_argument(
        "--until-healthy",
        action="store_true",
        help="stop everything and exit 0 as soon as every service is healthy",
    )
    parser.add_argument(
        "--health-timeout",
        type=float,
        default=60.0,
        help="seconds before warning which services are not healthy (default: 60)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds a service gets after SIGTERM before SIGKILL (default: 10)",
    )
    if argv and argv[0] == "--":
        # `ofx up -- --services api`: the separator that gets options past the outer parser.
        argv = argv[1:]
    return parser.parse_args(argv)


def _service_list(value: str) -> list[str]:
    services = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}"
        )
    if not services:
        raise argparse.ArgumentTypeError("no service given")
    return list(dict.fromkeys(services))


def _api_env(var_dir: Path, env: Mapping[str, str], console: _Console) -> dict[str, str]:
    """The API child's environment: bound to 127.0.0.1 unless OF_API_HOST says otherwise, with
    OF_API_TOKEN or a token generated into var/; prints the URL and the token."""
    from ofcommon.apitoken import local_token

    token, path = local_token(var_dir, env)
    host = env.get("OF_API_HOST") or "127.0.0.1"
    port = env.get("OF_API_PORT") or "8080"
    where = "OF_API_TOKEN" if path is None else str(path)
    fragment = urllib.parse.quote(token, safe="")
    # the dashboard takes the token from the fragment (never sent to the server) and keeps it
    console.info(f"API and dashboard: http://{host}:{port}/#token={fragment}  (token from {where})")
    return {**env, "OF_API_TOKEN": token, "OF_API_HOST": host, "OF_API_PORT": port}


def _child_env(redis_url: str, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OF_REDIS_URL=redis_url,
        OF_DATABASE_URL=database_url,
        # Children exit on their own if the supervisor is SIGKILLed.
        OF_PARENT_PID=str(os.getpid()),
        # Piped Python output is block-buffered; lines must reach the terminal as they happen.
        PYTHONUNBUFFERED="1",
    )
    return env


def _supervise(
    supervisor: _Supervisor,
    servers: StackServers,
    health_check: HealthCheck,
    stop: _StopRequest,
    args: argparse.Namespace,
    started: float,
    phases: Mapping[str, float],
) -> int:
    console = supervisor.console
    with _HealthMonitor(args.services, health_check, supervisor.env) as health:
        announced = warned = False
        while not stop.requested:
            now = time.monotonic()
            servers.watch(now)
            supervisor.poll(now)
            if not announced and health.all_healthy:
                announced = True
                # Where the start-up time went, so a slow start can be told apart at a glance.
                spent = [f"{name} {seconds:.1f}s" for name, seconds in phases.items()]
                spent.append(f"services {now - started - sum(phases.values()):.1f}s")
                console.info(
                    f"all {len(args.services)} services healthy after {now - started:.1f}s"
                    f" ({', '.join(spent)})"
                )
                if args.until_healthy:
                    return 0
            if not announced and not warned and now - started >= args.health_timeout:
                warned = True
                missing = ", ".join(health.unhealthy)
                console.warn(f"not healthy after {args.health_timeout:.0f}s: {missing}")
                if args.until_healthy:
                    return 1
            stop.wait(_TICK)
    console.info(f"received {stop.signal_name}, stopping")
    return 0


class _StopRequest:
    """Set from the signal handler; the main loop only ever waits on it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.count = 0
        self.signal_name = ""
        self._first = 0.0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.count and now - self._first < SAME_SIGNAL_WINDOW_S:
            # One Ctrl-C on `make run` arrives twice: from the terminal and forwarded by
            # `uv run`. Only a second press, later, means "stop now".
            return
        if not self.count:
            self._first = now
        self.count += 1
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


_Handler = Callable[[int, FrameType | None], object] | int | None


def _install_signal_handlers(stop: _StopRequest) -> dict[signal.Signals, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[signal.Signals, _Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, stop)
    return previous


def _restore_signal_handlers(previous: Mapping[signal.Signals, _Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class _Console:
    """Serialises lines from the reader threads and prefixes each with a fixed-width name."""

    def __init__(self, stream: TextIO, names: Sequence[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._width = max(len(name) for name in names)
        self._colour = _use_colour(stream)
        self._colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names[1:])}
        self._colours[SUPERVISOR_NAME] = "1"

    def line(self, name: str, text: str, colour: str | None = None) -> None:
        prefix = f"{name:<{self._width}} | "
        if self._colour:
            prefix = f"\033[{self._colours.get(name, '0')}m{prefix}{_RESET}"
        rows = text.splitlines() or [""]
        if self._colour and colour is not None:
            rows = [f"\033[{colour}m{row}{_RESET}" for row in rows]
        block = "".join(f"{prefix}{row}\n" for row in rows)
        with self._lock, contextlib.suppress(OSError, ValueError):
            # A closed terminal must not stop the supervisor from cleaning up.
            self._stream.write(block)
            self._stream.flush()

    def info(self, text: str) -> None:
        self.line(SUPERVISOR_NAME, text)

    def warn(self, text: str) -> None:
        self.line(SUPERVISOR_NAME, text, colour="33")

    def error(self, text: str) -> None:
        self.line(SUPERVISOR_NAME, text, colour="31")


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class _Child:
    service: str
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    restarts: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class _Supervisor:
    """Starts, watches, restarts and stops the service processes."""

    def __init__(
        self,
        services: Sequence[str],
        *,
        command: ChildCommand,
        env: dict[str, str],
        console: _Console,
        log_dir: Path,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.command = command
        self.env = env
        self.service_env = dict(service_env or {})
        self.console = console
        self.log_dir = log_dir
        self.children = [_Child(service) for service in services]
        self._logs: dict[str, IO[bytes]] = {}

    def start_all(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        log = self._logs.get(child.service)
        if log is None:
            log = self._logs[child.service] = (self.log_dir / f"{child.service}.log").open("ab")
        child.process = subprocess.Popen(
            list(self.command(child.service)),
            env=dict(self.service_env.get(child.service, self.env)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session and process group: a Ctrl-C in the terminal reaches the supervisor
            # only, and killpg() also reaches anything the service forks.
            start_new_session=True,
        )
        child.restart_at = None
        child.reader = threading.Thread(
            target=self._pump,
            args=(child.service, child.process, log),
            name=f"output-{child.service}",
            daemon=True,
        )
        child.reader.start()
        self.console.info(f"started {child.service} (pid {child.process.pid})")

    def _pump(self, service: str, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in iter(process.stdout.readline, b""):
                with contextlib.suppress(OSError, ValueError):
                    log.write(raw)
                    log.flush()
                self.console.line(service, raw.decode(errors="replace").rstrip("\r\n"))

    def poll(self, now: float) -> None:
        """Notice dead children and restart them when their backoff has passed."""
        for child in self.children:
            if child.process is not None:
                code = _reap_if_exited(child.process)
                if code is not None:
                    child.process = None
                    self._schedule_restart(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts.append(now)
                self._spawn(child)

    def _schedule_restart(self, child: _Child, code: int, now: float) -> None:
        while child.restarts and now - child.restarts[0] >= 60.0:
            child.restarts.popleft()
        if len(child.restarts) >= MAX_RESTARTS_PER_MINUTE:
            delay = child.restarts[0] + 60.0 - now
            note = f"{MAX_RESTARTS_PER_MINUTE} restarts in the last minute; next try"
        else:
            delay = min(2.0 ** len(child.restarts), MAX_BACKOFF)
            note = "restarting"
        child.restart_at = now + delay
        self.console.error(
            f"{child.service} exited unexpectedly ({describe_exit(code)}); {note} in {delay:.0f}s"
        )

    def _reap_exited(self) -> None:
        for child in self.children:
            if child.process is not None and _reap_if_exited(child.process) is not None:
                child.process = None

    def shutdown(self, timeout: float, stop: _StopRequest) -> None:
        """SIGTERM every service, SIGKILL whatever is left after `timeout` (or a second signal)."""
        self._reap_exited()
        alive = [child for child in self.children if child.process is not None]
        if alive:
            self.console.info(f"stopping {', '.join(c.service for c in alive)}")
        for child in alive:
            assert child.process is not None
            _signal_group(child.process.pid, signal.SIGTERM)
        already = stop.count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and stop.count <= already:
            self._reap_exited()
            if not any(child.process is not None for child in self.children):
                break
            time.sleep(0.05)
        stragglers = [child for child in self.children if child.process is not None]
        if stragglers:
            names = ", ".join(child.service for child in stragglers)
            self.console.warn(f"killing {names}: still running after SIGTERM")
        for child in stragglers:
            assert child.process is not None
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
            child.process = None
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2.0)
        for log in self._logs.values():
            log.close()
        if alive or stragglers:
            self.console.info("services stopped")


def _reap_if_exited(process: subprocess.Popen[bytes]) -> int | None:
    """Return the exit code of a finished child, after killing what is left in its group.

    The exit is observed without reaping (WNOWAIT): until we reap, the pid and so the process
    group id cannot be reused, which makes the killpg() safe.
    """
    if process.returncode is not None:
        return process.returncode
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return process.poll()
    if info is None:
        return None
    _signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _HealthMonitor:
    """Polls the health check in a thread, so a slow `ofx check` never delays the main loop."""

    def __init__(self, services: Sequence[str], check: HealthCheck, env: Mapping[str, str]) -> None:
        self._services = list(services)
        self._check = check
        self._env = env
        self._healthy: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def __enter__(self) -> _HealthMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Wait out a check in flight so no `ofx check` process outlives the supervisor.
        self._thread.join(timeout=CHECK_TIMEOUT + 1.0)

    @property
    def all_healthy(self) -> bool:
        with self._lock:
            return len(self._healthy) == len(self._services)

    @property
    def unhealthy(self) -> list[str]:
        with self._lock:
            return [service for service in self._services if service not in self._healthy]

    def _run(self) -> None:
        while not self._stop.is_set():
            for service in self.unhealthy:
                if self._stop.is_set():
                    return
                if self._safe_check(service):
                    with self._lock:
                        self._healthy.add(service)
            if self.all_healthy:
                return
            self._stop.wait(HEALTH_POLL_INTERVAL)

    def _safe_check(self, service: str) -> bool:
        try:
            return self._check(service, self._env)
        except Exception:
            # A broken check means "not healthy yet"; the 60 s warning will say which one.
            return False
