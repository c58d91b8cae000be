"""The local stack's lock and URL file: found while its owner lives, ignored once it died."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ofcommon.stackfile import StackLock, StackRunningError, adopt_local_stack, find_local_stack

OWNER = r"""
import sys, time
from pathlib import Path
from ofcommon.stackfile import StackLock
lock = StackLock(Path(sys.argv[1]))
lock.acquire()
lock.write_urls("redis://127.0.0.1:4001/0", "postgresql+psycopg://postgres@127.0.0.1:4002/of")
print("ready", flush=True)
time.sleep(120)
"""


def test_a_live_stack_is_found_and_a_dead_one_is_not(tmp_path: Path) -> None:
    var = tmp_path / "var"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(var)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"

        stack = find_local_stack(var)
        assert stack is not None
        assert (stack.pid, stack.redis_url) == (owner.pid, "redis://127.0.0.1:4001/0")
        env = {"OF_DATABASE_URL": "postgresql+psycopg://me@db/mine", "OF_REDIS_URL": ""}
        assert adopt_local_stack(env, var) == stack
        assert env == {
            "OF_REDIS_URL": "redis://127.0.0.1:4001/0",
            "OF_DATABASE_URL": "postgresql+psycopg://me@db/mine",  # a URL given is kept
        }
        with pytest.raises(StackRunningError, match=rf"another local stack \(pid {owner.pid}\)"):
            StackLock(var).acquire()

        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert (var / "stack.json").exists()  # left behind by the killed owner...
        assert find_local_stack(var) is None  # ...and ignored: nobody holds the lock
        untouched: dict[str, str] = {}
        assert adopt_local_stack(untouched, var) is None
        assert untouched == {}

        lock = StackLock(var)
        lock.acquire()  # the directory is free again
        assert (var / "ofx.lock").read_text().split() == [str(os.getpid())]
        lock.release()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_given_server_stays_out_of_the_file(tmp_path: Path) -> None:
    lock = StackLock(tmp_path / "var")
    lock.acquire()
    try:
        # OF_REDIS_URL was given to `ofx up` (it may hold a password): only PostgreSQL is shared.
        lock.write_urls(None, "postgresql+psycopg://postgres@127.0.0.1:4002/of")
        body = json.loads((tmp_path / "var" / "stack.json").read_text())
        assert body == {
            "pid": os.getpid(),
            "redis_url": None,
            "database_url": "postgresql+psycopg://postgres@127.0.0.1:4002/of",
        }
        env: dict[str, str] = {}
        assert adopt_local_stack(env, tmp_path / "var") is not None
        assert env == {"OF_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:4002/of"}
        lock.write_urls(None, None)
        nothing: dict[str, str] = {}
        assert adopt_local_stack(nothing, tmp_path / "var") is None
        assert nothing == {}
    finally:
        lock.release()
    assert not (tmp_path / "var" / "stack.json").exists()
