"""Patterns stage throughput: the fold over analytics outputs, in process and through Redis, beside
the raw read rate of its input streams.

    uv run python -m bench.patterns [--minutes 120] [--redis-url URL] [--out docs/benchmarks.md]

The inputs are the analytics outputs (bars with partials, book statistics, consumption events) of
a simulated BTCUSDT run, made in process (``scripts.score_patterns``). Three figures: the pure
``PatternsFold`` (inputs/s, best and median of ``--repeat``), plain ``XRANGE`` of the same three
streams (the baseline: what reading alone costs), and ``ofx run patterns`` folding them from Redis
(from start to its group's pending list drained and every input delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis
from scripts.score_patterns import START, analytics_outputs, patterns_outputs

from bench import harness
from of_patterns.fold import PatternsFold
from ofcommon import keys
from ofcommon.bus import Producer
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import Message
from ofcommon.simulator import SimConfig, simulate
from ofcommon.venue import Published

HEADING: Final = "## Patterns stage"
SYMBOL: Final = "BTCUSDT"
MINUTE: Final = 60_000_000_000


def build(minutes: int) -> list[tuple[EntryId, str, Message]]:
    registry = load_registry()
    config = SimConfig(
        instruments=(registry.get(SYMBOL),), start_ns=START, duration_ns=minutes * MINUTE
    )
    items = [i for i in simulate(config) if isinstance(i, Published)]
    return [e for e in analytics_outputs(registry, SYMBOL, items) if e[1] in PatternsFold.inputs]


def in_process(inputs: list[tuple[EntryId, str, Message]], repeat: int) -> list[float]:
    rates = []
    for _ in range(repeat):
        fold = PatternsFold(load_registry())
        t = time.perf_counter()
        patterns_outputs(fold, SYMBOL, inputs)
        rates.append(len(inputs) / (time.perf_counter() - t))
    return rates


async def write(r: aioredis.Redis, inputs: list[tuple[EntryId, str, Message]]) -> None:
    producer = Producer(r, service="bench", trim_by_age=False)
    for n, (_, kind, msg) in enumerate(inputs):
        producer.add(keys.stream(SYMBOL, kind), msg)
        if n % 1000 == 999:
            await producer.flush()
    await producer.flush()


async def raw_read(r: aioredis.Redis) -> float:
    t = time.perf_counter()
    n = 0
    for kind in PatternsFold.inputs:
        start = "-"
        while True:
            page = await r.xrange(keys.stream(SYMBOL, kind), min=start, max="+", count=1000)
            if not page:
                break
            n += len(page)
            start = "(" + page[-1][0].decode()
    return n / (time.perf_counter() - t)


async def drained(r: aioredis.Redis, total: int) -> bool:
    read = 0
    for kind in PatternsFold.inputs:
        for g in await r.xinfo_groups(keys.stream(SYMBOL, kind)):
            if g["name"] in (b"patterns", "patterns"):
                if g["pending"]:
                    return False
                read += int(g.get("entries-read") or 0)
    return read >= total


def _tail(path: str) -> str:
    return Path(path).read_text(errors="replace")[-2000:]


async def service(url: str, total: int, limit_s: float) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env |= {
        "OF_REDIS_URL": url,
        "OF_INSTRUMENTS": SYMBOL,
        "OF_LOG_LEVEL": "WARNING",
        "OF_WORKER_ID": "bench-patterns",
    }
    r = aioredis.Redis.from_url(url)
    with tempfile.NamedTemporaryFile(prefix="of-bench-patterns-", suffix=".log") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220  (started once, before anything is timed)
            [sys.executable, "-m", "ofcommon.cli", "run", "patterns"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=harness.ROOT,
        )
        try:
            t = time.perf_counter()
            while not await drained(r, total):
                if proc.poll() is not None or time.perf_counter() - t > limit_s:
                    raise RuntimeError(f"ofx run patterns did not finish: {_tail(log.name)}")
                await asyncio.sleep(0.05)
            return total / (time.perf_counter() - t)
        finally:
            proc.terminate()
            proc.wait(30)
            await r.aclose()


async def run(args: argparse.Namespace) -> str:
    inputs = build(args.minutes)
    fold_rates = in_process(inputs, args.repeat)
    with harness.redis_server(args.redis_url) as (url, where):
        r = aioredis.Redis.from_url(url)
        try:
            await r.flushdb()
            await write(r, inputs)
            read_rate = await raw_read(r)
        finally:
            await r.aclose()
        stage_rate = await service(url, len(inputs), args.timeout)
    fmt = harness.fmt_rate
    return (
        f"{len(inputs):,} analytics outputs of {args.minutes} simulated BTCUSDT minutes"
        f" (bars with partials, bookstats, consumption); Redis: {where}.\n\n"
        "| Path | inputs/s (best) | median |\n|---|---:|---:|\n"
        f"| `PatternsFold`, in process | {fmt(max(fold_rates))}"
        f" | {fmt(statistics.median(fold_rates))} |\n"
        f"| plain XRANGE of the three streams (baseline) | {fmt(read_rate)} | |\n"
        f"| `ofx run patterns` through Redis | {fmt(stage_rate)} | |\n"
    )


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.patterns", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--minutes", type=int, default=120, help="simulated minutes of inputs")
    p.add_argument("--repeat", type=int, default=3, help="in-process fold runs")
    p.add_argument("--timeout", type=float, default=600, help="seconds the service may take")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    args = p.parse_args(argv)
    body = asyncio.run(run(args))
    print(f"{HEADING}\n\n{body}")
    if args.out:
        harness.write_section(
            args.out,
            HEADING,
            f"`{command or harness.command_line('bench.patterns', argv)}`\n\n{body}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
