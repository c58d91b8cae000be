"""Labels: the JSON-lines file format, and scoring a detector's signals against the labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofcommon.messages import Direction, PatternSignal
from ofcommon.simulator import Label, LabelWriter, read_labels, score
from ofcommon.simulator.labels import encode_label

S = 1_000_000_000


def label(n: int, pattern: str = "sweep", direction: int = 1, symbol: str = "BTCUSDT") -> Label:
    return Label(
        label_id=f"{symbol}-{n}-{pattern}",
        instrument=symbol,
        pattern=pattern,
        direction=direction,
        start_ns=n * 1000 * S,
        end_ns=n * 1000 * S + 60 * S,
        price_levels=[65000.0, 65000.03],
        params={"levels_swept": 3, "volume_per_level": [1.5, 2.0, 0.75], "thin": True},
        seed=42,
    )


def signal(ts_s: float, pattern: str = "sweep", direction: int = 1) -> PatternSignal:
    return PatternSignal(
        signal_id=f"{pattern}-{ts_s}",
        ts_event=int(ts_s * S),
        pattern=pattern,
        direction=Direction(direction),
        price=65000.0,
        strength=50.0,
    )


def test_a_label_is_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "labels.jsonl"
    with LabelWriter(path) as writer:
        writer.write(label(1))
        writer.write(label(2, "absorption", -1))
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == [
        "label_id",
        "instrument",
        "pattern",
        "direction",
        "start_ns",
        "end_ns",
        "price_levels",
        "params",
        "seed",
        "version",
    ]
    assert first["params"]["volume_per_level"] == [1.5, 2.0, 0.75]
    assert list(read_labels(path)) == [label(1), label(2, "absorption", -1)]
    assert encode_label(label(1)) == lines[0] + b"\n"


def test_the_writer_starts_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text("stale\n")
    with LabelWriter(path) as writer:
        writer.write(label(3))
    assert list(read_labels(path)) == [label(3)]


def test_score_counts_hits_misses_and_false_alarms() -> None:
    labels = [label(1), label(2), label(3, "absorption", -1), label(4, symbol="EURUSD")]
    signals = [
        ("BTCUSDT", signal(1000 + 30)),  # inside label 1
        ("BTCUSDT", signal(1000 + 30)),  # a repeat: still a true signal, still one hit
        ("BTCUSDT", signal(2000 + 60 + 100)),  # label 2, within the 120 s slack after its end
        ("BTCUSDT", signal(3000 + 10, "absorption", 1)),  # wrong direction
        ("EURUSD", signal(1000 + 30)),  # right time, wrong instrument
    ]
    result = score(labels, signals)
    sweep = result["sweep"]
    assert (sweep.labels, sweep.signals, sweep.hits, sweep.true_signals) == (3, 4, 2, 3)
    assert sweep.precision == pytest.approx(3 / 4)
    assert sweep.recall == pytest.approx(2 / 3)
    absorption = result["absorption"]
    assert (absorption.hits, absorption.true_signals) == (0, 0)
    assert score(labels, signals, check_direction=False)["absorption"].hits == 1
    assert score(labels, signals, slack_s=10)["sweep"].hits == 1
    assert result["initiative"].signals == 0
    assert result["initiative"].precision == 0.0


def test_regime_labels_are_not_scored() -> None:
    regime = Label(
        label_id="X-1-regime",
        instrument="BTCUSDT",
        pattern="regime",
        direction=1,
        start_ns=0,
        end_ns=10 * S,
        price_levels=[1.0, 2.0],
        params={"regime": "trend"},
        seed=1,
    )
    assert all(s.labels == 0 for s in score([regime], []).values())
