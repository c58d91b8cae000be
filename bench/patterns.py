"""Patterns stage throughput: the fold over analytics outputs, in process and through Redis, beside
the raw read rate of its input streams.

    uv run python -m bench.patterns [--source both|trades|sim] [--redis-url URL] [--out FILE]

Two input sets, each the analytics outputs the patterns stage reads, made in process
(``scripts.score_patterns.analytics_outputs``): ``trades``, analytics' own benchmark run (the real
Binance spot BTCUSDT trades looped to ``--n`` = 1,000,000, ``bench.analytics``; bars only, there is
no book), with ``AnalyticsFold``'s rate over them timed in the same run; ``sim``, ``--minutes`` of
the simulated BTCUSDT market (bars, book statistics and consumption events). Per set: the pure
``PatternsFold`` (inputs/s, best and median of ``--repeat``), plain ``XRANGE`` of the same streams
(the baseline: what reading alone costs), and ``ofx run patterns`` folding them from Redis (from
start to its group's pending list drained and every input delivered); each also as analytics
input trades per second (inputs/s x trades / inputs), the figure to set beside analytics' rate.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis
from scripts.score_patterns import START, analytics_outputs, patterns_outputs

from bench import analytics as analytics_bench, harness
from of_patterns.fold import PatternsFold
from ofcommon import keys
from ofcommon.bus import Producer
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import Message, Trade
from ofcommon.simulator import SimConfig, simulate
from ofcommon.venue import Published

HEADING: Final = "## Patterns stage"
SYMBOL: Final = "BTCUSDT"
MINUTE: Final = 60_000_000_000
MEASURED: Final = ["services/patterns", "services/analytics", "libs/ofcommon"]


Inputs = list[tuple[EntryId, str, Message]]


@dataclass(frozen=True)
class InputSet:
    name: str
    inputs: Inputs
    trades: int  # analytics input trades behind them
    analytics_s: float  # seconds AnalyticsFold took to make them (in process, this run)


def build(minutes: int) -> InputSet:
    """The simulated market's analytics outputs (with its book)."""
    registry = load_registry()
    config = SimConfig(
        instruments=(registry.get(SYMBOL),), start_ns=START, duration_ns=minutes * MINUTE
    )
    items = [i for i in simulate(config) if isinstance(i, Published)]
    trades = sum(1 for i in items if isinstance(i.msg, Trade))
    t = time.perf_counter()
    outputs = analytics_outputs(registry, SYMBOL, items)
    took = time.perf_counter() - t
    inputs = [e for e in outputs if e[1] in PatternsFold.inputs]
    return InputSet(f"{minutes} simulated BTCUSDT minutes", inputs, trades, took)


def build_trades(n: int) -> InputSet | None:
    """The analytics outputs of analytics' benchmark run: the real trades looped to ``n``."""
    path = analytics_bench.data_path()
    if not path.is_file():
        harness.log(f"{path} not found: the trades input set is left out")
        return None
    trades = analytics_bench.read_tape(path).trades(0, n)
    items = [Published(SYMBOL, "trades", t) for t in trades]
    t = time.perf_counter()
    outputs = analytics_outputs(load_registry(), SYMBOL, items)
    took = time.perf_counter() - t
    inputs = [e for e in outputs if e[1] in PatternsFold.inputs]
    return InputSet(f"analytics' {n:,}-trade run (Binance BTCUSDT looped)", inputs, n, took)


def in_process(inputs: Inputs, repeat: int) -> list[float]:
    rates = []
    for _ in range(repeat):
        fold = PatternsFold(load_registry())
        t = time.perf_counter()
        patterns_outputs(fold, SYMBOL, inputs)
        rates.append(len(inputs) / (time.perf_counter() - t))
    return rates


async def write(r: aioredis.Redis, inputs: Inputs) -> None:
    producer = Producer(r, service="bench", trim_by_age=False)
    for n, (_, kind, msg) in enumerate(inputs):
        producer.add(keys.stream(SYMBOL, kind), msg)
        if n % 1000 == 999:
            await producer.flush()
    await producer.flush()


async def raw_read(r: aioredis.Redis, kinds: list[str]) -> float:
    t = time.perf_counter()
    n = 0
    for kind in kinds:
        start = "-"
        while True:
            page = await r.xrange(keys.stream(SYMBOL, kind), min=start, max="+", count=1000)
            if not page:
                break
            n += len(page)
            start = "(" + page[-1][0].decode()
    return n / (time.perf_counter() - t)


async def drained(r: aioredis.Redis, total: int, kinds: list[str]) -> bool:
    """Every input delivered to the stage's group and acknowledged: the group's last delivered
    entry is each stream's last and nothing is pending (Redis 6.2 has no entries-read)."""
    for kind in kinds:
        stream = keys.stream(SYMBOL, kind)
        last = (await r.xinfo_stream(stream))["last-generated-id"]
        groups = [g for g in await r.xinfo_groups(stream) if g["name"] in (b"patterns", "patterns")]
        if not groups or groups[0]["pending"] or groups[0]["last-delivered-id"] != last:
            return False
    return True


def _tail(path: str) -> str:
    return Path(path).read_text(errors="replace")[-2000:]


async def service(url: str, total: int, kinds: list[str], limit_s: float) -> float:
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
            while not await drained(r, total, kinds):
                if proc.poll() is not None or time.perf_counter() - t > limit_s:
                    raise RuntimeError(f"ofx run patterns did not finish: {_tail(log.name)}")
                await asyncio.sleep(0.05)
            return total / (time.perf_counter() - t)
        finally:
            proc.terminate()
            proc.wait(30)
            await r.aclose()


async def measure(args: argparse.Namespace, data: InputSet) -> str:
    inputs = data.inputs
    kinds = [k for k in PatternsFold.inputs if any(e[1] == k for e in inputs)]
    fold_rates = in_process(inputs, args.repeat)
    with harness.redis_server(args.redis_url) as (url, where):
        r = aioredis.Redis.from_url(url)
        try:
            await r.flushdb()
            await write(r, inputs)
            read_rate = await raw_read(r, kinds)
        finally:
            await r.aclose()
        stage_rate = await service(url, len(inputs), kinds, args.timeout)
    fmt = harness.fmt_rate
    per_trade = data.trades / len(inputs)  # analytics input trades per patterns input

    made = len(inputs) / data.analytics_s  # patterns inputs AnalyticsFold made per second

    def row(name: str, rate: float, median: str = "") -> str:
        return (
            f"| {name} | {fmt(rate)} | {median} | {rate / read_rate:.3f} | {rate / made:.2f}"
            f" | {fmt(rate * per_trade)} |\n"
        )

    analytics = (
        f" `AnalyticsFold` (in process, this run) made them at {fmt(made)} outputs/s"
        f" ({fmt(data.trades / data.analytics_s)} input trades/s)."
    )
    counts = ", ".join(f"{sum(1 for e in inputs if e[1] == k):,} {k}" for k in kinds)
    return (
        f"**{data.name}**: {data.trades:,} trades -> {len(inputs):,} analytics outputs the stage"
        f" reads ({counts}; bars include partials); Redis: {where}.{analytics}\n\n"
        "| Path | inputs/s (best) | median | x XRANGE baseline | x AnalyticsFold's output rate"
        " | analytics trades/s equivalent |\n|---|---:|---:|---:|---:|---:|\n"
        + row("`PatternsFold`, in process", max(fold_rates), fmt(statistics.median(fold_rates)))
        + row("plain XRANGE of the streams (baseline)", read_rate)
        + row("`ofx run patterns` through Redis", stage_rate)
    )


async def run(args: argparse.Namespace) -> str:
    sets: list[InputSet] = []
    if args.source in ("both", "trades") and (got := build_trades(args.n)) is not None:
        sets.append(got)
    if args.source in ("both", "sim"):
        sets.append(build(args.minutes))
    start = harness.load_average()
    body = "\n".join([await measure(args, s) for s in sets])
    code = harness.library_state(MEASURED)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    return (
        f"{body}\nDate (UTC) {when}; measured code {code}; load average at start {start}, at end"
        f" {harness.load_average()} (2 cores shared with other work: read the same-run ratios"
        " before the absolute rates).\n"
    )


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.patterns", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--source", choices=("both", "trades", "sim"), default="both")
    p.add_argument("--n", type=int, default=1_000_000, help="trades of the trades input set")
    p.add_argument("--minutes", type=int, default=120, help="simulated minutes of the sim set")
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
