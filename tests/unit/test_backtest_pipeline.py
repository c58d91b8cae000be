"""`ofx backtest`: two runs write byte-identical files, and the journal, signals and bars do not
depend on the fold batch size or on how the input is chunked between the stages (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.support.backtest_data import binance_recording
from tests.support.real_data import BINANCE_SPOT, require

from of_backtest import cli, export
from of_backtest.pipeline import Journal
from of_backtest.run import live_registry, pipeline, run
from of_backtest.source import Intake, Window, recordings, simulated
from ofcommon.instruments import load_registry
from ofcommon.messages import Trade
from ofcommon.simulator import SimConfig

pytestmark = pytest.mark.timeout(300)

# 23:45 to 00:15 UTC: BTCUSDT's session (the UTC day) closes inside the run, so the journal
# holds a bias; the 20-bar warm-up ends at 00:05, so the detectors speak before the end.
SIM_FROM = "2024-03-05T23:45:00Z"
SIM_START = 1_709_682_300_000_000_000
SIM_MINUTES = 30


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    require(BINANCE_SPOT)
    return binance_recording(tmp_path_factory.mktemp("rec"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_runs_of_a_real_recording_write_identical_files(
    recording: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(p) for p in recording]
    assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    expected = {
        f"{t}.{x}" for t in ("events", "trades", "bias", "signals") for x in ("csv", "parquet")
    }
    assert expected | {"bars_1m.parquet", "report.html", "summary.json"} <= set(a)
    assert a == b
    # The capture: 9,757 trades from 23:54:15 to 00:00:01 (exchange time) -> closed 1m bars
    # 23:54 .. 23:59, and the UTC day's session closes at midnight: one bias.
    bars = pq.read_table(tmp_path / "a" / "bars_1m.parquet").to_pylist()
    assert [b["open_ts"] % 86_400_000_000_000 // 60_000_000_000 for b in bars] == list(
        range(23 * 60 + 54, 24 * 60)
    )
    assert all(b["footprint"] for b in bars)
    for b in bars:  # the footprint holds the bar's volume, row by row
        total = sum(r["bid_volume"] + r["ask_volume"] for r in b["footprint"])
        assert total == pytest.approx(b["volume"], rel=1e-9)
        assert sum(r["trades"] for r in b["footprint"]) == b["trades"]
    assert sum(b["trades"] for b in bars) <= 9757
    bias = pq.read_table(tmp_path / "a" / "bias.parquet").to_pylist()
    assert [r["session_id"] for r in bias] == ["2024-08-08"]
    summary = json.loads(a["summary.json"])
    assert summary["input"]["messages"] == {"book": 3450, "trades": 9757}
    assert "closed trades" in capsys.readouterr().out


def _sim(batch: int, chunk: int) -> tuple[Journal, list[dict[str, Any]], list[dict[str, Any]]]:
    registry = load_registry()
    config = SimConfig(
        instruments=(registry.get("BTCUSDT"),),
        start_ns=SIM_START,
        seed=5,
        duration_ns=SIM_MINUTES * 60_000_000_000,
    )
    intake = Intake()
    bars = export.BarList()
    pipe = pipeline(registry, batch, bars=bars)
    result = run(simulated(config, intake, chunk_size=chunk), intake, pipe)
    return result.journal, export.signal_rows(result.pipeline.collected), bars.rows


@pytest.mark.slow
def test_batch_sizes_and_chunks_give_the_same_journal_signals_and_bars() -> None:
    base = _sim(1000, 4096)
    journal, signals, bars = base
    assert journal.bias
    assert journal.events
    assert signals
    assert len(bars) == SIM_MINUTES - 1  # every minute but the last (no later trade closes it)
    for batch, chunk in ((1, 1), (7, 50_000)):
        assert _sim(batch, chunk) == base, (batch, chunk)


def test_batching_does_not_change_a_real_recording(recording: list[Path]) -> None:
    def once(batch: int, chunk: int) -> tuple[Journal, list[dict[str, Any]]]:
        registry = live_registry()
        intake = Intake()
        chunks = recordings(recording, registry, intake, chunk_size=chunk)
        bars = export.BarList()
        result = run(chunks, intake, pipeline(registry, batch, bars=bars))
        return result.journal, bars.rows

    base = once(1000, 4096)
    assert base[0].bias
    assert base[1]
    assert once(3, 11) == base
    assert once(1000, 100_000) == base


def test_the_simulated_market_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--sim", "5", "--from", SIM_FROM, "--hours", "0.25", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "instruments BTCUSDT" in out
    assert (tmp_path / "report.html").stat().st_size > 0
    assert len(pq.read_table(tmp_path / "bars_1m.parquet")) == 14


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give recordings or --sim SEED"),
        (["nope.gz"], "nope.gz: no such file"),
        (["--sim", "1", "--instruments", "NOPE"], "NOPE"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_ofx_finds_the_plugged_in_command() -> None:
    """`ofx backtest` comes from the of-backtest package's ``ofx.commands`` entry point."""
    listed = subprocess.run(
        [sys.executable, "-m", "ofcommon.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "backtest" in listed.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "ofcommon.cli", "backtest", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--sim SEED" in helped.stdout


def test_from_and_to_select_frames_by_receive_time(recording: list[Path]) -> None:
    registry = live_registry()
    everything = [e for c in recordings(recording, registry, Intake()) for _, e in c]
    recv = sorted(getattr(e.msg, "ts_recv", 0) for e in everything if e.kind == "trades")
    lo, hi = recv[len(recv) // 4], recv[len(recv) // 2]
    intake = Intake()
    window = Window(lo, hi)
    part = [e for c in recordings(recording, registry, intake, window=window) for _, e in c]
    trades = [e for e in part if e.kind == "trades"]
    assert trades
    assert all(lo <= getattr(e.msg, "ts_recv", 0) < hi for e in trades)
    assert len(trades) == sum(1 for t in recv if lo <= t < hi)
    # the same trades, under the same IDs, as in the whole run
    whole = {(e.id, e.msg.trade_id) for e in everything if isinstance(e.msg, Trade)}
    assert all((e.id, e.msg.trade_id) in whole for e in part if isinstance(e.msg, Trade))
