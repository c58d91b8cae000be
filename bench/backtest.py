"""Backtest speed and memory: ``ofx backtest``'s pipeline over a recording of real trades, beside
the in-process analytics fold alone on the same trades (the baseline), and RSS over a long loop.

    uv run python -m bench.backtest [--passes 10] [--rss-trades 10000000] [--out docs/benchmarks.md]

The trades are the Binance spot BTCUSDT capture (``../shared/data/real``) as Bybit
``publicTrade`` frames, looped ``--passes`` times (each pass moved on by whole minutes, trade ids
made unique, as ``ofx replay --loop`` does) and written as one recording. Baseline:
``AnalyticsFold.step_batch`` over the parsed ``Trade`` messages in batches of 1,000 (the stage's
read count), parsing not timed. Backtest: the recording read, parsed by the live Bybit parser and
folded by analytics, patterns and aggregator, with the report's taps (no files written). Memory:
the same trades looped to ``--rss-trades`` straight into the pipeline (no parser), RSS sampled.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
import psutil
from tests.support.real_data import BINANCE_SPOT

from bench import harness
from of_analytics.fold import AnalyticsFold
from of_backtest.export import BarFile
from of_backtest.run import pipeline, run
from of_backtest.source import CHUNK, Chunk, Intake, recordings
from of_feed_bybit.parser import BybitParser
from ofcommon import keys
from ofcommon.entry_ids import ReceiveIds
from ofcommon.inprocess import Entry
from ofcommon.instruments import load_registry
from ofcommon.messages import Trade
from ofcommon.recording import RecordingWriter
from ofcommon.replay import shift_period

HEADING: Final = "## Backtest"
MEMORY_HEADING: Final = "## Backtest memory"
SYMBOL: Final = "BTCUSDT"
BATCH: Final = 1000


def _tape() -> list[tuple[int, dict[str, object]]]:
    """(recv_ns, Binance trade) of the capture, in capture order."""
    out: list[tuple[int, dict[str, object]]] = []
    with gzip.open(BINANCE_SPOT, "rt", encoding="utf-8") as f:
        for line in f:
            stamp, _, text = line.partition(" ")
            d = json.loads(text)
            d = d.get("data", d)
            if d.get("e") == "trade":
                out.append((int(stamp), d))
    return out


def _frame(t: dict[str, object], shift_ms: int, suffix: str) -> bytes:
    row = {
        "T": int(str(t["T"])) + shift_ms,
        "s": SYMBOL,
        "S": "Sell" if t["m"] else "Buy",
        "v": t["q"],
        "p": t["p"],
        "i": f"{t['t']}{suffix}",
        "BT": False,
        "seq": t["t"],
    }
    topic = f"publicTrade.{SYMBOL}"
    msg = {"topic": topic, "type": "snapshot", "ts": row["T"], "data": [row]}
    return json.dumps(msg, separators=(",", ":")).encode()


def write_recording(directory: Path, passes: int) -> tuple[list[Path], int]:
    tape = _tape()
    lo = min(min(r, int(str(t["T"])) * 1_000_000) for r, t in tape)
    hi = max(max(r, int(str(t["T"])) * 1_000_000) for r, t in tape)
    period = shift_period(lo, hi)
    with RecordingWriter(directory, "bybit", "linear") as w:
        for k in range(passes):
            suffix = f"~{k}" if k else ""
            for recv, t in tape:
                w.write(recv + k * period, _frame(t, k * period // 1_000_000, suffix))
    return w.paths, len(tape) * passes


def parsed_trades(paths: list[Path]) -> list[Trade]:
    parser = BybitParser("linear", load_registry())
    out: list[Trade] = []
    for path in paths:
        with gzip.open(path, "rb") as f:
            for line in f:
                stamp, _, frame = line.rstrip(b"\n").partition(b" ")
                out.extend(p.msg for p in parser.parse(int(stamp), frame) if type(p.msg) is Trade)
    return out


def fold_rate(trades: list[Trade]) -> float:
    fold = AnalyticsFold(load_registry())
    state = fold.initial(SYMBOL)
    ids = ReceiveIds()
    stream = keys.stream(SYMBOL, "trades")
    items = [(ids.next(stream, t.ts_recv), t) for t in trades]
    harness.settle()
    t0 = time.perf_counter()
    for i in range(0, len(items), BATCH):
        fold.step_batch(state, "trades", items[i : i + BATCH])
    return len(items) / (time.perf_counter() - t0)


def backtest_rate(paths: list[Path], n: int) -> float:
    registry = load_registry()
    harness.settle()
    t0 = time.perf_counter()
    intake = Intake()
    run(recordings(paths, registry, intake), intake, pipeline(registry))
    assert intake.stats.messages.get("trades") == n
    return n / (time.perf_counter() - t0)


_PACKAGES: Final = (
    "of_feed_bybit",
    "of_analytics",
    "of_patterns",
    "of_aggregator",
    "of_backtest",
    "ofcommon",
)


def _package(file: str) -> str:
    parts = Path(file).parts
    for name in _PACKAGES:
        if name in parts:
            return name
    return "builtins" if file == "~" else Path(file).parent.name or "other"


def chained_rate(trades: list[Trade]) -> float:
    """The three folds and the taps over the parsed trades, without the parser."""
    ids = ReceiveIds()
    stream = keys.stream(SYMBOL, "trades")
    entries = [(SYMBOL, Entry(ids.next(stream, t.ts_recv), "trades", t)) for t in trades]
    chunks = [entries[i : i + CHUNK] for i in range(0, len(entries), CHUNK)]
    pipe = pipeline(load_registry())
    harness.settle()
    t0 = time.perf_counter()
    for chunk in chunks:
        pipe.feed(chunk)
    return len(entries) / (time.perf_counter() - t0)


def profile(paths: list[Path], top: int = 8) -> str:
    """Own time by package, then the top functions (cProfile of one backtest run)."""
    registry = load_registry()
    prof = cProfile.Profile()
    intake = Intake()
    prof.enable()
    run(recordings(paths, registry, intake), intake, pipeline(registry))
    prof.disable()
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by: dict[str, float] = {}
    for (file, _, _), v in raw.items():
        by[_package(file)] = by.get(_package(file), 0.0) + v[2]
    lines = ["| package | own time | share |", "|---|---:|---:|"]
    for name, t in sorted(by.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {name} | {t:.2f} s | {100 * t / total:.0f} % |")
    lines += ["", "| function | own time | share |", "|---|---:|---:|"]
    for (file, line, name), v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        where = "/".join(Path(file).parts[-2:])
        lines.append(f"| `{where}:{line} {name}` | {v[2]:.2f} s | {100 * v[2] / total:.0f} % |")
    return "\n".join(lines)


def looped(trades: list[Trade], total: int) -> Iterator[Chunk]:
    """The trades again and again, each pass moved on by whole minutes with fresh ids."""
    lo = min(t.ts_event for t in trades)
    hi = max(max(t.ts_event, t.ts_recv) for t in trades)
    lo = min(lo, min(t.ts_recv for t in trades))
    period = shift_period(lo, hi)
    ids = ReceiveIds()
    stream = keys.stream(SYMBOL, "trades")
    replace = msgspec.structs.replace
    chunk: Chunk = []
    n = k = 0
    while n < total:
        shift = k * period
        for t in trades:
            m = replace(
                t,
                ts_event=t.ts_event + shift,
                ts_recv=t.ts_recv + shift,
                trade_id=f"{t.trade_id}~{k}",
            )
            chunk.append((SYMBOL, Entry(ids.next(stream, m.ts_recv), "trades", m)))
            n += 1
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
            if n >= total:
                break
        k += 1
    if chunk:
        yield chunk


def rss_curve(
    trades: list[Trade], total: int, out: Path, samples: int = 10
) -> list[tuple[int, float]]:
    proc = psutil.Process()
    bars = BarFile(out / "bars_1m.parquet")  # as ofx backtest: the bars go to disk as they close
    pipe = pipeline(load_registry(), bars=bars)
    every = max(total // samples, CHUNK)
    curve: list[tuple[int, float]] = []
    done = 0
    mark = every
    harness.settle()
    curve.append((0, proc.memory_info().rss / 2**20))
    for chunk in looped(trades, total):
        pipe.feed(chunk)
        done += len(chunk)
        if done >= mark:
            mark += every
            curve.append((done, proc.memory_info().rss / 2**20))
            harness.log(f"bench.backtest: {done:,} trades, RSS {curve[-1][1]:.0f} MiB")
    bars.close()
    return curve


def speed(args: argparse.Namespace) -> tuple[str, list[Trade]]:
    with tempfile.TemporaryDirectory(prefix="of-bench-backtest-") as tmp:
        paths, n = write_recording(Path(tmp), args.passes)
        trades = parsed_trades(paths)
        fold, chained, full = [], [], []
        for _ in range(args.repeat):  # interleaved: a load change hits every column
            fold.append(fold_rate(trades))
            chained.append(chained_rate(trades))
            full.append(backtest_rate(paths, n))
        prof = profile(paths)
    base = statistics.median(fold)
    fmt = harness.fmt_rate

    def row(name: str, rates: list[float], ratio: bool = True) -> str:
        share = f"{100 * statistics.median(rates) / base:.0f} %" if ratio else ""
        return f"| {name} | {fmt(max(rates))} | {fmt(statistics.median(rates))} | {share} |\n"

    text = (
        f"{n:,} real trades (the Binance BTCUSDT capture looped {args.passes} times, as Bybit"
        f" frames); load average {harness.load_average()} (a shared 2-core machine).\n\n"
        "| Path | trades/s (best) | median | of the baseline |\n|---|---:|---:|---:|\n"
        + row("`AnalyticsFold.step_batch` on the parsed trades (baseline)", fold, ratio=False)
        + row("the three folds + report taps on the parsed trades (no parser)", chained)
        + row("`ofx backtest`'s run: recording, live parser, three folds, taps", full)
        + "\nTarget: the backtest at >= 80 % of the baseline.\n\n"
        f"Where the backtest's time goes (cProfile of one run, own time):\n\n{prof}\n"
    )
    return text, trades


def memory(trades: list[Trade], total: int) -> str:
    with tempfile.TemporaryDirectory(prefix="of-bench-backtest-") as tmp:
        curve = rss_curve(trades, total, Path(tmp))
    rows = "\n".join(f"| {d:,} | {r:.0f} |" for d, r in curve)
    grow = curve[-1][1] - curve[1][1] if len(curve) > 1 else 0.0
    return (
        f"RSS over {total:,} looped real trades (the capture again and again, each pass moved on"
        " by whole minutes, straight into the pipeline: no parser; the closed bars written to"
        " Parquet as they close, as `ofx backtest` does), sampled every tenth:\n\n"
        f"| trades | RSS (MiB) |\n|---:|---:|\n{rows}\n\n"
        f"Growth from the first tenth to the end: {grow:+.0f} MiB.\n"
    )


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.backtest", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="ignored (no Redis involved); accepted like the others")
    p.add_argument("--passes", type=int, default=10, help="passes over the real trade tape")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each path")
    p.add_argument("--rss-trades", type=int, default=10_000_000, help="0: skip the memory run")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    args = p.parse_args(argv)
    cmd = command or harness.command_line("bench.backtest", argv)
    text, trades = speed(args)
    print(f"{HEADING}\n\n{text}")
    if args.out:
        harness.write_section(args.out, HEADING, f"`{cmd}`\n\n{text}")
    if args.rss_trades:
        mem = memory(trades, args.rss_trades)
        print(f"{MEMORY_HEADING}\n\n{mem}")
        if args.out:
            harness.write_section(args.out, MEMORY_HEADING, f"`{cmd}`\n\n{mem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
