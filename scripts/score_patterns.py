"""`make score`: every pattern detector over the simulated market's labelled episodes.

The whole pipeline runs in process, as the stages would: simulator -> ``AnalyticsFold`` ->
``PatternsFold``, each input with a stream entry ID (the receive time's millisecond, as Redis
assigns it) and each stage's outputs with the IDs the stage derives, folded in entry-ID order.
Prints, per detector: recall with the right direction, false fires per 1,000 episode-free bars
and the median delay from an episode's onset to the decision time. docs/quality.md records them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
from tests.support.real_data import BINANCE_SPOT, CME_ESH4_TRADES

from of_analytics.fold import AnalyticsFold
from of_patterns.fold import PatternsFold
from of_patterns.settings import ThresholdMode
from ofcommon import entry_ids
from ofcommon.entry_ids import EntryId
from ofcommon.inprocess import Entry, InProcessStage
from ofcommon.instruments import Registry, load_registry
from ofcommon.messages import Bar, Heartbeat, Message, PatternSignal, Side, Trade
from ofcommon.simulator import EPISODE_PATTERNS, Label, SimConfig, events
from ofcommon.venue import Published

MINUTE: Final = 60_000_000_000
START: Final = 1_709_649_000_000_000_000  # 2024-03-05T14:30:00Z: NY cash open, every session open
SLACK_NS: Final = 2 * MINUTE  # a bar detector speaks after the closing bar: the scorer's slack
# The sweep is an event detector: it speaks when its burst's consumption has settled.
SLACK_NS_OF: Final = {"sweep": 5_000_000_000}
SYMBOLS: Final = ("BTCUSDT", "NAS100USDT", "EURUSD")
TUNING_SEEDS: Final = (1, 2, 3)
REPORT_SEEDS: Final = (11, 12, 13)
MINUTES: Final = 240
TAIL_MINUTES: Final = 15  # the longest episode fits (the simulator starts none with less room)


@dataclass
class Run:
    """One instrument's simulated run through both stages."""

    symbol: str
    seed: int
    labels: list[Label] = field(default_factory=list)
    signals: list[PatternSignal] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)  # final bars of the detectors' timeframe
    end_ns: int = 0  # the end of the simulated inputs (0: no end)


class _Ids:
    """Stream entry IDs as Redis assigns them: the millisecond, then a sequence within it."""

    def __init__(self) -> None:
        self._last: dict[str, EntryId] = {}

    def next(self, stream: str, ms: int) -> EntryId:
        prev = self._last.get(stream, entry_ids.ZERO)
        new = EntryId(ms, 0) if ms > prev.ms else prev.next()
        self._last[stream] = new
        return new


def _ts_recv(msg: Message) -> int:
    recv = getattr(msg, "ts_recv", None)
    return int(recv if recv is not None else getattr(msg, "ts_event", 0))


def analytics_outputs(
    registry: Registry, symbol: str, items: Iterable[Published]
) -> list[tuple[EntryId, str, Message]]:
    """The analytics stage's outputs for one instrument's inputs, as (entry ID, stream kind,
    message), sorted by entry ID (ties: the stage's input order)."""
    ids = _Ids()
    entries = [Entry(ids.next(i.kind, _ts_recv(i.msg) // 1_000_000), i.kind, i.msg) for i in items]
    out = InProcessStage(AnalyticsFold(registry)).feed(symbol, entries)
    order = {k: n for n, k in enumerate(PatternsFold.inputs)}
    out.sort(key=lambda e: (e.id, order.get(e.kind, 99)))
    return [(e.id, e.kind, e.msg) for e in out]


def patterns_outputs(
    fold: PatternsFold, symbol: str, inputs: Sequence[tuple[EntryId, str, Message]]
) -> list[tuple[EntryId, PatternSignal]]:
    """The patterns stage's signals over analytics outputs in entry-ID order, with their IDs."""
    out: list[tuple[EntryId, PatternSignal]] = []
    for e in InProcessStage(fold).feed(symbol, [Entry(*i) for i in inputs]):
        assert isinstance(e.msg, PatternSignal)
        out.append((e.id, e.msg))
    return out


def run(symbol: str, seed: int, *, minutes: int = MINUTES, mode: ThresholdMode = "auto") -> Run:
    """One instrument's run of ``minutes``. The simulator runs ``TAIL_MINUTES`` longer for the
    labels only: an episode cut by the run's end is labelled when it ends, so without them its
    bars would count as episode-free."""
    registry = load_registry()
    end = START + minutes * MINUTE
    config = SimConfig(
        instruments=(registry.get(symbol),),
        start_ns=START,
        seed=seed,
        duration_ns=(minutes + TAIL_MINUTES) * MINUTE,
    )
    result = Run(symbol, seed, end_ns=end)
    published: list[Published] = []
    for at, item in events(config):
        if isinstance(item, Label):
            if item.start_ns < end:
                result.labels.append(item)
        elif at < end:
            published.append(item)
    fold = PatternsFold(registry, mode=mode)
    analytics = analytics_outputs(registry, symbol, published)
    result.bars = [
        m
        for _, k, m in analytics
        if k == "bars" and isinstance(m, Bar) and m.final and m.timeframe == fold.timeframe
    ]
    result.signals = [s for _, s in patterns_outputs(fold, symbol, analytics)]
    return result


@dataclass(frozen=True)
class Quality:
    """``episodes``: the labels after the warm-up; ``free_fires``: signals on an episode-free bar
    (no episode window of any pattern, with its slack, overlaps it); ``cross_fires``: signals that
    match no episode of their own pattern but fall inside another pattern's episode."""

    pattern: str
    episodes: int
    hits: int
    signals: int
    free_fires: int
    cross_fires: int
    free_bars: int
    delays_s: tuple[float, ...]

    @property
    def recall(self) -> float:
        return self.hits / self.episodes if self.episodes else 0.0

    @property
    def false_per_1000(self) -> float:
        return 1000.0 * self.free_fires / self.free_bars if self.free_bars else 0.0

    @property
    def median_delay_s(self) -> float:
        return statistics.median(self.delays_s) if self.delays_s else float("nan")


def _slack(pattern: str) -> int:
    return SLACK_NS_OF.get(pattern, SLACK_NS)


def _matches(sig: PatternSignal, label: Label) -> bool:
    return (
        label.pattern == sig.pattern
        and label.direction == int(sig.direction)
        and label.start_ns <= sig.ts_event <= label.end_ns + _slack(label.pattern)
    )


def _within(ts: int, label: Label) -> bool:
    return label.start_ns <= ts <= label.end_ns + SLACK_NS


def quality(runs: Iterable[Run], warmup_bars: int = 20) -> dict[str, Quality]:
    """Per pattern: recall with the right direction, fires on episode-free bars, cross fires and
    delays. Episodes starting before the warm-up ends (``warmup_bars`` closed bars) are left out
    of the recall, as are episodes cut by the run's end (their window with its slack is not over):
    no detector may speak before the one or could after the other. Both still mark their bars as
    not episode-free."""
    acc: dict[str, list[int]] = {p: [0, 0, 0, 0, 0] for p in EPISODE_PATTERNS}
    delays: dict[str, list[float]] = {p: [] for p in EPISODE_PATTERNS}
    free = 0
    for r in runs:
        ready = r.bars[warmup_bars - 1].close_ts if len(r.bars) >= warmup_bars else None
        episodes = [lb for lb in r.labels if lb.pattern in EPISODE_PATTERNS]
        free_bars = [
            b
            for b in r.bars
            if not any(
                b.open_ts <= lb.end_ns + SLACK_NS and lb.start_ns < b.close_ts for lb in episodes
            )
        ]
        free += len(free_bars)
        for lb in episodes:
            if ready is None or lb.start_ns < ready:
                continue
            if r.end_ns and lb.end_ns + _slack(lb.pattern) > r.end_ns:
                continue
            hits = [s.ts_event for s in r.signals if _matches(s, lb)]
            acc[lb.pattern][0] += 1
            if hits:
                acc[lb.pattern][1] += 1
                delays[lb.pattern].append((min(hits) - lb.start_ns) / 1e9)
        for s in r.signals:
            acc[s.pattern][2] += 1
            if any(_matches(s, lb) for lb in episodes):
                continue
            if any(_within(s.ts_event, lb) for lb in episodes):
                acc[s.pattern][4] += 1
            else:
                acc[s.pattern][3] += 1
    return {
        p: Quality(p, a[0], a[1], a[2], a[3], a[4], free, tuple(delays[p])) for p, a in acc.items()
    }


def report(q: dict[str, Quality]) -> str:
    lines = [
        "| detector | episodes | recall | signals | fires on free bars | per 1,000 free bars"
        " | cross fires | median delay |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in EPISODE_PATTERNS:
        x = q[p]
        lines.append(
            f"| {p} | {x.episodes} | {100 * x.recall:.1f} % | {x.signals} | {x.free_fires} |"
            f" {x.false_per_1000:.2f} | {x.cross_fires} | {x.median_delay_s:.0f} s |"
        )
    return "\n".join(lines)


# --- real data: fire rates -----------------------------------------------------------------------


def binance_trades(path: Path = BINANCE_SPOT) -> Iterator[Trade]:
    """The trades of the Binance spot BTCUSDT capture (``<local_ns> <json>`` lines)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            _, _, text = line.partition(" ")
            d = json.loads(text)
            d = d.get("data", d)
            if d.get("e") != "trade":
                continue
            ts = int(d["T"]) * 1_000_000
            side = Side.SELL if d["m"] else Side.BUY  # the buyer was the maker: a sell aggressor
            yield Trade(
                ts, int(line.partition(" ")[0]), float(d["p"]), float(d["q"]), side, str(d["t"])
            )


def cme_trades(path: Path = CME_ESH4_TRADES) -> Iterator[Trade]:
    """The CME ESH4 prints with an aggressor side (the opening cross, side N, is left out)."""
    with path.open(newline="") as f:
        for n, r in enumerate(csv.DictReader(f)):
            if r["aggressor_side"] not in ("B", "A"):
                continue
            side = Side.BUY if r["aggressor_side"] == "B" else Side.SELL
            yield Trade(
                int(r["ts_event_ns"]),
                int(r["ts_recv_ns"]),
                float(r["price"]),
                float(r["size"]),
                side,
                f"{r['sequence']}-{n}",
            )


@dataclass(frozen=True)
class FireRates:
    name: str
    bars: int  # bars judged (after the warm-up)
    fires: dict[str, int]

    def per_100(self, pattern: str) -> float:
        return 100.0 * self.fires.get(pattern, 0) / self.bars if self.bars else 0.0


def real_fire_rates(
    name: str, symbol: str, trades: Iterable[Trade], registry: Registry, mode: ThresholdMode
) -> FireRates:
    """Each detector's fires over a real tape (trades only: no book, so no sweep or book
    absorption), through both stages."""
    items: list[Published] = [Published(symbol, "trades", t) for t in trades]
    end = max(p.msg.ts_event for p in items if isinstance(p.msg, Trade)) + 2 * MINUTE
    items.append(Published(symbol, "trades", Heartbeat(end, end, "score")))
    fold = PatternsFold(registry, mode=mode)
    analytics = analytics_outputs(registry, symbol, items)
    bars = [
        m
        for _, k, m in analytics
        if k == "bars" and isinstance(m, Bar) and m.final and m.timeframe == fold.timeframe
    ]
    signals = [s for _, s in patterns_outputs(fold, symbol, analytics)]
    fires = {p: sum(1 for s in signals if s.pattern == p) for p in EPISODE_PATTERNS}
    return FireRates(name, max(0, len(bars) - fold.warmup), fires)


def real_runs(mode: ThresholdMode = "auto") -> list[FireRates]:
    registry = load_registry()
    # CME's E-mini trades at 0.25: the registry's SP500 entry (a CFD at 0.1) with the real tick.
    es = msgspec.structs.replace(
        registry.get("SP500"), symbol="ESH4", tick_size=0.25, row_size=1.0, mt5=None
    )
    return [
        real_fire_rates("Binance spot BTCUSDT", "BTCUSDT", binance_trades(), registry, mode),
        real_fire_rates("CME ESH4", "ESH4", cme_trades(), Registry([*registry.all(), es]), mode),
    ]


def real_report(rates: Sequence[FireRates]) -> str:
    lines = [
        "| tape | bars judged | " + " | ".join(EPISODE_PATTERNS) + " |",
        "|---|---:|" + "---:|" * len(EPISODE_PATTERNS),
    ]
    for r in rates:
        cells = " | ".join(f"{r.per_100(p):.1f}" for p in EPISODE_PATTERNS)
        lines.append(f"| {r.name} | {r.bars} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", default=",".join(map(str, REPORT_SEEDS)))
    ap.add_argument("--symbols", default=",".join(SYMBOLS))
    ap.add_argument("--minutes", type=int, default=MINUTES)
    ap.add_argument("--mode", choices=("auto", "fixed"), default="auto")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    symbols = args.symbols.split(",")
    runs = [
        run(sym, seed, minutes=args.minutes, mode=args.mode) for seed in seeds for sym in symbols
    ]
    free = quality(runs)[EPISODE_PATTERNS[0]].free_bars
    print(
        f"seeds {seeds}, {', '.join(symbols)}, {args.minutes} simulated minutes each,"
        f" mode {args.mode}; {free} episode-free bars"
    )
    print(report(quality(runs)))
    print()
    print(
        "Fire rates per 100 bars on real trades (no book: sweep and book absorption cannot fire):"
    )
    print(real_report(real_runs(args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
