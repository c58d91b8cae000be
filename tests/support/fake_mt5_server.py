"""An RPyC classic server whose ``MetaTrader5`` is the fake: a stand-in for mt5linux's server.

Tests script the fake terminal over a second classic connection (``control``), as any client could.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    args = parser.parse_args(argv)

    from rpyc.core.service import SlaveService
    from rpyc.utils.server import ThreadedServer

    from tests.support import fake_mt5

    sys.modules["MetaTrader5"] = fake_mt5  # what `import MetaTrader5 as mt5` finds on the bridge
    server = ThreadedServer(
        SlaveService,
        hostname="127.0.0.1",  # an RPyC classic server executes anything: never beyond loopback
        port=args.port,
        auto_register=False,
        protocol_config={"sync_request_timeout": 60},
    )
    print(server.port, flush=True)
    server.start()
    return 0


@contextlib.contextmanager
def serve(timeout_s: float = 30.0) -> Iterator[int]:
    """Run the server in a subprocess; yields its port, kills it (by pid) afterwards."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env = {k: v for k, v in env.items() if not k.startswith("OF_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_mt5_server"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"fake MT5 bridge did not start (said {line!r})")
        port = int(line)
        _wait_listening(port, timeout_s)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=timeout_s)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_listening(port: int, timeout_s: float) -> None:
    # The server knows its port once bound, but accepts only once started: wait for that.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def control(port: int) -> Any:
    """A classic connection for scripting the fake terminal on the server."""
    import rpyc

    return rpyc.classic.connect("127.0.0.1", port)


if __name__ == "__main__":
    raise SystemExit(main())
