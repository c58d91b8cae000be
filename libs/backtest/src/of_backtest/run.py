"""One backtest: the folds configured as the live stages configure them (the same ``OF_*``
settings and registry), the input through the pipeline, the results kept for the exports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from of_aggregator.fold import AggregatorFold
from of_aggregator.settings import AggregatorSettings
from of_analytics.fold import AnalyticsFold
from of_backtest.pipeline import BarSink, Journal, Pipeline, journal
from of_backtest.source import Chunk, Intake, Progress
from of_patterns.fold import PatternsFold
from of_patterns.settings import PatternsSettings
from ofcommon.instruments import Registry, load_registry
from ofcommon.settings import load_settings


def live_registry() -> Registry:
    """The registry the stages load (``OF_REGISTRY_FILE`` overrides and adds instruments)."""
    return load_registry(load_settings(PatternsSettings).registry_file or None)


def pipeline(
    registry: Registry, batch: int = 1000, *, record: bool = False, bars: BarSink | None = None
) -> Pipeline:
    """The three folds with the live stages' settings (``OF_PATTERNS_*``, ``OF_AGGREGATOR_*``)."""
    patterns = load_settings(PatternsSettings)
    aggregator = load_settings(AggregatorSettings)
    return Pipeline(
        registry,
        AnalyticsFold(registry),
        PatternsFold.from_settings(registry, patterns),
        AggregatorFold(registry, machine=aggregator.machine()),
        batch=batch,
        record=record,
        bars=bars,
    )


@dataclass
class Result:
    pipeline: Pipeline
    intake: Intake
    journal: Journal


def run(
    chunks: Iterator[Chunk],
    intake: Intake,
    pipe: Pipeline,
    on_progress: Callable[[Progress], None] | None = None,
) -> Result:
    progress = intake.progress
    for chunk in chunks:
        pipe.feed(chunk)
        if on_progress is not None:
            seen = pipe.collected.values()
            progress.trades = sum(c.trades for c in seen)
            progress.event_ns = max((c.last_ts for c in seen), default=0)
            on_progress(progress)
    seen = pipe.collected.values()
    progress.trades = sum(c.trades for c in seen)
    progress.event_ns = max((c.last_ts for c in seen), default=0)
    return Result(pipe, intake, journal(pipe.collected))
