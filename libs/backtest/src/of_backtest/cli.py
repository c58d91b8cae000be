"""``ofx backtest``: recordings (or ``--sim``) through the live folds in one process; the journal,
bars and the HTML report into ``--out``, the headline table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from msgspec import ValidationError

from of_backtest import export, report
from of_backtest.progress import Reporter
from of_backtest.run import Result, live_registry, pipeline, run
from of_backtest.source import Intake, Window, recordings, simulated
from of_backtest.stats import Costs
from ofcommon.instruments import Registry, RegistryConfigError
from ofcommon.plugins import Command
from ofcommon.replay import ReplayError
from ofcommon.settings import SettingsError
from ofcommon.simulator import SimConfig

SIM_START: Final = "2024-03-05T14:30:00Z"  # the NY cash open: every session is open
# Round-trip costs by venue: taker fee per side, and the spread in ticks (docs/backtest.md).
DEFAULT_COSTS: Final = {"bybit": Costs(fee=0.00055, spread_ticks=1.0), "mt5": Costs(0.0, 1.0)}


def _instant(text: str) -> int:
    """ISO-8601 (UTC unless it says otherwise) or integer nanoseconds since the epoch."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or epoch ns: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _cost(text: str) -> tuple[str, Costs]:
    venue, sep, rest = text.partition("=")
    fee, sep2, spread = rest.partition(":")
    try:
        if not (sep and sep2):
            raise ValueError
        return venue, Costs(float(fee) / 10_000, float(spread))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected VENUE=FEE_BPS:SPREAD_TICKS (e.g. bybit=5.5:1), got {text!r}"
        ) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ofx backtest",
        description="the live pipeline (analytics, patterns, aggregator) in one process over"
        " recordings or the simulated market, with the journal, bars and an HTML report",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="recordings (docs/replay.md)")
    p.add_argument("--instruments", default="", help="comma-separated symbols (default: all)")
    p.add_argument("--from", dest="start", type=_instant, help="first receive time (ISO or ns)")
    p.add_argument("--to", dest="end", type=_instant, help="receive time to stop at (excluded)")
    p.add_argument("--out", type=Path, help="output folder (default var/backtests/<UTC stamp>)")
    p.add_argument("--sim", type=int, metavar="SEED", help="the simulated market with this seed")
    p.add_argument("--hours", type=float, default=4.0, help="simulated hours (with --sim)")
    p.add_argument(
        "--cost",
        type=_cost,
        action="append",
        default=[],
        metavar="VENUE=FEE_BPS:SPREAD_TICKS",
        help="costs of a venue (default bybit=5.5:1, mt5=0:1)",
    )
    p.add_argument("--batch", type=int, default=1000, help="entries per fold batch (read_count)")
    return p


def _costs(registry: Registry, symbols: Sequence[str], given: dict[str, Costs]) -> dict[str, Costs]:
    venues = {**DEFAULT_COSTS, **given}
    out = {}
    for s in symbols:
        venue = registry.get(s).feed_venue
        out[s] = venues.get(venue or "", Costs())
    return out


def execute(
    args: argparse.Namespace, registry: Registry, reporter: Reporter | None, bars: export.BarFile
) -> Result:
    symbols = frozenset(s for s in args.instruments.split(",") if s) or None
    window = Window(args.start, args.end)
    intake = Intake()
    pipe = pipeline(registry, args.batch, bars=bars)
    if args.sim is not None:
        chosen = sorted(symbols or {"BTCUSDT"})
        start = args.start if args.start is not None else _instant(SIM_START)
        config = SimConfig(
            instruments=tuple(registry.get(s) for s in chosen),
            start_ns=start,
            seed=args.sim,
            duration_ns=int(args.hours * 3600e9),
        )
        chunks = simulated(config, intake, window=Window(None, args.end))
    else:
        chunks = recordings(args.files, registry, intake, symbols=symbols, window=window)
    return run(chunks, intake, pipe, reporter.update if reporter else None)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if bool(args.files) == (args.sim is not None):
        print("ofx backtest: give recordings or --sim SEED (not both)", file=sys.stderr)
        return 2
    args.files = [Path(f) for f in args.files]
    for f in args.files:
        if not f.is_file():
            print(f"ofx backtest: {f}: no such file", file=sys.stderr)
            return 2
    out = args.out or Path("var/backtests") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        registry = live_registry()
        if args.instruments:
            for s in args.instruments.split(","):
                registry.get(s)
        reporter = Reporter()
        bars = export.BarFile(out / "bars_1m.parquet")
        result = execute(args, registry, reporter, bars)
    except (
        ReplayError,
        RegistryConfigError,
        SettingsError,
        KeyError,
        ValidationError,
    ) as e:
        print(f"ofx backtest: {e}", file=sys.stderr)
        return 2
    reporter.done(result.intake.progress)
    costs = _costs(registry, sorted(result.pipeline.collected), dict(args.cost))
    files = [bars.close(), *export.write_all(out, result.journal, result.pipeline.collected)]
    summary = report.build(result, registry, costs)
    files.append(report.write(out, summary))
    print(report.headline(summary))
    print(f"\nwrote {len(files)} files to {out}/ (report: {out / report.FILE})")
    return 0


COMMAND = Command(name="backtest", summary=__doc__.splitlines()[0] if __doc__ else "", main=main)
