"""Prometheus metrics shared by every service, labelled by service and stream kind.

Served on ``OF_METRICS_PORT`` by the runner; names follow the Prometheus conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES_IN: Final = Counter("of_messages_in_total", "Stream entries consumed", ["service", "kind"])
MESSAGES_OUT: Final = Counter(
    "of_messages_out_total", "Stream entries produced", ["service", "kind"]
)
DUPLICATES: Final = Counter(
    "of_duplicate_outputs_total",
    "Outputs Redis refused as already written (replay after a crash)",
    ["service", "kind"],
)
HOLES: Final = Counter(
    "of_refused_outputs_total",
    "Explicit-ID outputs Redis refused below the stream top that were not duplicates (lost)",
    ["service", "kind"],
)
WRITE_ERRORS: Final = Counter(
    "of_write_errors_total",
    "Outputs Redis refused to write (OOM, MISCONF, READONLY...); kept for the next flush",
    ["service", "kind"],
)
BACKLOG: Final = Gauge(
    "of_producer_backlog_entries",
    "Outputs a failed flush left buffered for the next one (all producers of the process)",
    ["service"],
)
DROPPED: Final = Counter(
    "of_producer_dropped_total",
    "Outputs a producer's full buffer gave up while Redis refused writes (reported by a Gap)",
    ["service", "kind"],
)
DEAD_LETTERS: Final = Counter(
    "of_dead_letters_total", "Entries sent to a dead-letter stream", ["service", "reason"]
)
TRIMMED_UNREAD: Final = Counter(
    "of_trimmed_unread_total",
    "Entries trimmed from an input stream before the consumer's group read them",
    ["service", "kind"],
)
LAG: Final = Gauge(
    "of_stream_lag_entries", "Entries not yet delivered to the group", ["service", "stream"]
)
PENDING: Final = Gauge(
    "of_stream_pending_entries", "Entries delivered but not acknowledged", ["service", "stream"]
)
LATENCY: Final = Histogram(
    "of_processing_latency_seconds",
    "From an input entry's arrival on its stream to its outputs being written",
    ["service"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
FOLD_EVENTS: Final = Gauge(
    "of_fold_events",
    "Per-instrument tallies a stage's fold keeps in its state (late trades, gaps, duplicates, ...)",
    ["service", "symbol", "name"],
)
REFOLDS: Final = Counter(
    "of_refolds_total",
    "Owned-stage restarts from the checkpoint to re-fold without a dead-lettered input",
    ["service"],
)
OWNED: Final = Gauge("of_owned_instruments", "Instruments this worker owns", ["service"])
CHECKPOINTS: Final = Counter(
    "of_checkpoints_total", "Checkpoints by outcome", ["service", "outcome"]
)

SOURCE_REFUSED: Final = Counter(
    "of_source_refused_total",
    "Instruments a feed did not publish because another venue holds their source claim",
    ["service", "symbol", "holder"],
)


def observe_counts(hist: Any, counts: Mapping[float, int]) -> None:
    """``hist.observe(value)`` ``n`` times for each ``value: n`` of ``counts``, one bucket and sum
    increment per distinct value (a stage observes every entry of a batch, most alike: one
    call per entry was a few per cent of a busy stage). ``hist`` is a labelled Histogram; the
    sum may differ from one-by-one observations by float rounding only."""
    buckets = getattr(hist, "_buckets", None)
    bounds = getattr(hist, "_upper_bounds", None)
    total = getattr(hist, "_sum", None)
    if buckets is None or bounds is None or total is None:  # not the client's layout: plainly
        for value, n in counts.items():
            for _ in range(n):
                hist.observe(value)
        return
    for value, n in counts.items():
        total.inc(value * n)
        for i, bound in enumerate(bounds):
            if value <= bound:
                buckets[i].inc(n)
                break


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 = off)."""
    if port:
        start_http_server(port)
