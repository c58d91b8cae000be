"""Ground truth of a simulated run: one label per injected episode or market phase, as JSON lines.

Also the scoring of a detector's signals against those labels (precision and recall per pattern).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Final, Literal, TypeAlias

import msgspec

from ofcommon.messages import PatternSignal

__all__ = [
    "EPISODE_PATTERNS",
    "Label",
    "LabelWriter",
    "PatternScore",
    "read_labels",
    "score",
]

LabelPattern: TypeAlias = Literal[
    "absorption", "initiative", "sweep", "exhaustion", "divergence", "regime"
]
EPISODE_PATTERNS: Final[tuple[str, ...]] = (
    "absorption",
    "initiative",
    "sweep",
    "exhaustion",
    "divergence",
)
ParamValue: TypeAlias = int | float | str | bool | list[float]
LABEL_VERSION: Final = 1


class Label(msgspec.Struct, frozen=True, kw_only=True):
    """What was injected where. ``direction`` is the trade the pattern suggests (1 long, -1 short,
    0 none), as in ``PatternSignal.direction``; times are event time, ns since the epoch, UTC;
    ``[start_ns, end_ns]`` is the window in which the pattern's defining activity happens."""

    label_id: str
    instrument: str
    pattern: LabelPattern
    direction: int
    start_ns: int
    end_ns: int
    price_levels: list[float]
    params: dict[str, ParamValue]
    seed: int
    version: int = LABEL_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Label)


def encode_label(label: Label) -> bytes:
    return _encoder.encode(label) + b"\n"


class LabelWriter:
    """Writes labels as JSON lines to ``path`` (created with its directory, truncated on open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = self.path.open("wb")
        self.count = 0

    def write(self, label: Label) -> None:
        # Flushed per label: they are rare and a reader may be scoring while the run goes on.
        self._file.write(encode_label(label))
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_labels(path: str | Path) -> Iterator[Label]:
    with Path(path).open("rb") as f:
        for line in f:
            if line.strip():
                yield _decoder.decode(line)


class PatternScore(msgspec.Struct, frozen=True):
    pattern: str
    labels: int
    signals: int
    hits: int  # labels matched by at least one signal
    true_signals: int  # signals that match a label
    precision: float
    recall: float


def score(
    labels: Iterable[Label],
    signals: Iterable[tuple[str, PatternSignal]],
    *,
    slack_s: float = 120.0,
    check_direction: bool = True,
) -> dict[str, PatternScore]:
    """Score (symbol, signal) pairs from ``of:{SYM}:patterns`` against the labels.

    A signal matches a label of the same instrument and pattern (and direction, unless
    ``check_direction`` is off) when its ``ts_event`` lies in ``[start_ns, end_ns + slack]``: bar
    detectors can only speak once the bar that completes the pattern has closed. Precision is the
    share of signals that match some label; recall the share of labels matched by some signal.
    """
    slack = int(slack_s * 1e9)
    by_key: dict[tuple[str, str], list[Label]] = {}
    for label in labels:
        if label.pattern in EPISODE_PATTERNS:
            by_key.setdefault((label.instrument, label.pattern), []).append(label)
    matched: set[str] = set()
    counts: dict[str, list[int]] = {p: [0, 0] for p in EPISODE_PATTERNS}  # signals, true signals
    for symbol, sig in signals:
        tally = counts.setdefault(sig.pattern, [0, 0])
        tally[0] += 1
        hit = False
        for label in by_key.get((symbol, sig.pattern), ()):
            if check_direction and int(sig.direction) != label.direction:
                continue
            if label.start_ns <= sig.ts_event <= label.end_ns + slack:
                matched.add(label.label_id)
                hit = True
        tally[1] += hit
    out: dict[str, PatternScore] = {}
    for pattern, (n_signals, n_true) in counts.items():
        pattern_labels = [lb for (_, p), lbs in by_key.items() if p == pattern for lb in lbs]
        hits = sum(lb.label_id in matched for lb in pattern_labels)
        out[pattern] = PatternScore(
            pattern=pattern,
            labels=len(pattern_labels),
            signals=n_signals,
            hits=hits,
            true_signals=n_true,
            precision=n_true / n_signals if n_signals else 0.0,
            recall=hits / len(pattern_labels) if pattern_labels else 0.0,
        )
    return out
