"""The live pipeline in one process: ``AnalyticsFold`` -> ``PatternsFold`` -> ``AggregatorFold``,
each driven as its stage drives it (``ofcommon.inprocess``), with what the report needs kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from of_aggregator.fold import AggregatorFold
from of_aggregator.journal import bias_row, event_row, trade_row
from of_analytics.fold import AnalyticsFold
from of_backtest.ofi import OfiTap
from of_patterns.fold import PatternsFold
from ofcommon.entry_ids import EntryId
from ofcommon.inprocess import DeadLetter, Entry, InProcessStage
from ofcommon.instruments import Registry
from ofcommon.messages import Bar, Bias, Gap, PatternSignal, SideSource, Trade, TradeEvent

BAR_TIMEFRAME: Final = "1m"
OFI_WIDTHS: Final = {"10s": 10_000_000_000, "1m": 60_000_000_000}
_JOURNAL_KINDS: Final = ("entry", "breakeven", "trail", "exit")
_TAPPED: Final = frozenset({"trades", "book"})


class BarSink(Protocol):
    def add(self, symbol: str, entry_id: EntryId, bar: Bar) -> None: ...


@dataclass
class Collected:
    """Per instrument: what the stages published that the journal, exports and report use."""

    symbol: str
    closes: list[tuple[int, float]] = field(default_factory=list)  # closed 1m bars: ts, close
    gapped_bars: int = 0
    signals: list[tuple[EntryId, PatternSignal]] = field(default_factory=list)
    events: dict[str, tuple[EntryId, TradeEvent]] = field(default_factory=dict)  # first per id
    biases: dict[str, tuple[EntryId, Bias]] = field(default_factory=dict)  # last per session
    side_sources: Counter[SideSource] = field(default_factory=Counter)
    input_gaps: Counter[str] = field(default_factory=Counter)
    trades: int = 0
    first_ts: int = 0
    last_ts: int = 0
    ofi: dict[str, OfiTap] = field(
        default_factory=lambda: {k: OfiTap(w) for k, w in OFI_WIDTHS.items()}
    )


class Pipeline:
    """The three folds over every instrument; ``feed`` takes a chunk of input entries."""

    def __init__(
        self,
        registry: Registry,
        analytics: AnalyticsFold,
        patterns: PatternsFold,
        aggregator: AggregatorFold,
        *,
        batch: int = 1000,
        record: bool = False,
        bars: BarSink | None = None,
    ) -> None:
        """``record``: keep every output of every stage in ``streams`` (symbol, kind) -> entries,
        as the live stages publish them (for comparisons with a live run; memory grows).
        ``bars``: where the closed 1-minute bars go (``export.BarFile``, ``export.BarList``)."""
        self.registry = registry
        self.bars = bars
        self.streams: dict[tuple[str, str], list[Entry]] | None = {} if record else None
        self.analytics = InProcessStage(analytics, batch)
        self.patterns = InProcessStage(patterns, batch)
        self.aggregator = InProcessStage(aggregator, batch)
        self.collected: dict[str, Collected] = {}

    def feed(self, chunk: Iterable[tuple[str, Entry]]) -> None:
        per: dict[str, list[Entry]] = {}
        for symbol, entry in chunk:
            got = per.get(symbol)
            if got is None:
                got = per[symbol] = []
            got.append(entry)
        for symbol in sorted(per):
            self._one(symbol, per[symbol])

    def _one(self, symbol: str, entries: list[Entry]) -> None:
        c = self.collected.get(symbol)
        if c is None:
            c = self.collected[symbol] = Collected(symbol)
        self._inputs(c, entries)
        analytics = self.analytics.feed(symbol, entries)
        patterns = self.patterns.feed(symbol, analytics)
        aggregator = self.aggregator.feed(symbol, analytics + patterns)
        if self.streams is not None:
            for e in (*analytics, *patterns, *aggregator):
                self.streams.setdefault((symbol, e.kind), []).append(e)
        sink = self.bars
        for e in analytics:
            m = e.msg
            if e.kind == "bars" and type(m) is Bar and m.final and m.timeframe == BAR_TIMEFRAME:
                c.closes.append((m.close_ts, m.close))  # closed bars are final: once each
                c.gapped_bars += m.gapped
                if sink is not None:
                    sink.add(symbol, e.id, m)
        for e in patterns:
            if isinstance(e.msg, PatternSignal):
                c.signals.append((e.id, e.msg))
        for e in aggregator:
            if isinstance(e.msg, TradeEvent):
                c.events.setdefault(e.msg.event_id, (e.id, e.msg))
            elif isinstance(e.msg, Bias):
                c.biases[e.msg.session_id] = (e.id, e.msg)

    @staticmethod
    def _inputs(c: Collected, entries: list[Entry]) -> None:
        taps = [tap.on for tap in c.ofi.values()]
        sources = c.side_sources
        trades = 0
        last = c.last_ts
        for e in entries:
            m = e.msg
            if type(m) is Trade:
                trades += 1
                sources[m.side_source] += 1
                if m.ts_event > last:
                    last = m.ts_event
                if not c.first_ts:
                    c.first_ts = m.ts_event
            elif isinstance(m, Gap):
                c.input_gaps[m.stream] += 1
            if e.kind in _TAPPED:
                for on in taps:
                    on(m)
        c.trades += trades
        c.last_ts = last

    def dead_letters(self) -> list[DeadLetter]:
        return [
            *self.analytics.dead_letters,
            *self.patterns.dead_letters,
            *self.aggregator.dead_letters,
        ]

    def tallies(self) -> dict[str, dict[str, float]]:
        """Analytics' data-quality tallies per instrument (late trades, gaps, duplicates …)."""
        fold = self.analytics.fold
        assert isinstance(fold, AnalyticsFold)
        return {s: fold.tallies(st) for s, st in sorted(self.analytics.states.items())}


@dataclass(frozen=True)
class Journal:
    """The journal tables as the aggregator's PostgreSQL journal holds them, row for row."""

    events: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    bias: list[dict[str, Any]]


def journal(collected: dict[str, Collected]) -> Journal:
    events: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    bias: list[dict[str, Any]] = []
    for symbol in sorted(collected):
        c = collected[symbol]
        rows = [event_row(symbol, e) for _, e in c.events.values()]
        rows.sort(key=lambda r: (r["ts_event"], r["event_id"]))
        events.extend(rows)
        per_trade: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["kind"] in _JOURNAL_KINDS:
                per_trade.setdefault(r["trade_id"], []).append(r)
        for trade_id, trade_events in per_trade.items():
            row = trade_row(symbol, trade_id, trade_events)
            if row is not None:
                trades.append(row)
        bias.extend(bias_row(symbol, b) for _, b in sorted(c.biases.values()))
    trades.sort(key=lambda r: (r["symbol"], r["entry_ts"], r["trade_id"]))
    bias.sort(key=lambda r: (r["symbol"], r["ts_event"], r["session_id"]))
    return Journal(events, trades, bias)
