"""The running local stack's marks in its data directory: a lock naming its pid, the URLs it serves.

`ofx up` holds the lock for its whole life; other `ofx` commands read the URLs from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

__all__ = [
    "DEFAULT_VAR_DIR",
    "LocalStack",
    "StackLock",
    "StackRunningError",
    "adopt_local_stack",
    "find_local_stack",
]

DEFAULT_VAR_DIR: Final = Path("var")
LOCK_NAME: Final = "ofx.lock"
URLS_NAME: Final = "stack.json"


class StackRunningError(RuntimeError):
    """Another `ofx up` holds the data directory."""

    def __init__(self, var_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another local stack ({who}) is running on {var_dir}; stop it first"
            f" (Ctrl-C in its terminal{f', or kill {pid}' if pid is not None else ''})"
        )
        self.pid = pid


class StackLock:
    """An exclusive flock on var/ofx.lock holding the owner's pid.

    The kernel drops the lock when its process dies, even by SIGKILL: a lock that can be taken
    means no live stack, so whatever server is left on the directory is stale.
    """

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        # "a+", not "w": truncating before the lock is ours would erase the holder's pid.
        handle = (self.var_dir / LOCK_NAME).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = _int(handle.read())
            handle.close()
            raise StackRunningError(self.var_dir, pid) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def write_urls(self, redis_url: str | None, database_url: str | None) -> None:
        """Publish the embedded servers' URLs for other terminals (None: a server the stack was
        given, whose URL may hold a password and stays out of the file). Written whole, then
        renamed into place."""
        target = self.var_dir / URLS_NAME
        tmp = target.with_suffix(".tmp")
        body = {"pid": os.getpid(), "redis_url": redis_url, "database_url": database_url}
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(target)

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.var_dir / URLS_NAME).unlink()
        self._file.close()  # closing the descriptor releases the flock
        self._file = None


@dataclass(frozen=True)
class LocalStack:
    """What a live `ofx up` serves."""

    pid: int
    redis_url: str | None
    database_url: str | None
    path: Path


def find_local_stack(var_dir: Path = DEFAULT_VAR_DIR) -> LocalStack | None:
    """The stack running on `var_dir`; None when no live stack holds its lock (stale file)."""
    try:
        body = json.loads((var_dir / URLS_NAME).read_text())
        redis_url, database_url, pid = body["redis_url"], body["database_url"], body["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    urls_ok = all(url is None or isinstance(url, str) for url in (redis_url, database_url))
    if not (urls_ok and isinstance(pid, int)):
        return None
    if not _locked(var_dir / LOCK_NAME):
        return None
    return LocalStack(pid, redis_url, database_url, var_dir / URLS_NAME)


def adopt_local_stack(
    env: MutableMapping[str, str], var_dir: Path = DEFAULT_VAR_DIR
) -> LocalStack | None:
    """Point `env` at the local stack's servers for whichever of OF_REDIS_URL and
    OF_DATABASE_URL is unset; the stack if it set one, else None (env untouched)."""
    if env.get("OF_REDIS_URL") and env.get("OF_DATABASE_URL"):
        return None
    stack = find_local_stack(var_dir)
    if stack is None:
        return None
    adopted = False
    for name, url in (("OF_REDIS_URL", stack.redis_url), ("OF_DATABASE_URL", stack.database_url)):
        if url and not env.get(name):
            env[name] = url
            adopted = True
    return stack if adopted else None


def _locked(path: Path) -> bool:
    try:
        handle = path.open("r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _int(text: str) -> int | None:
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None
