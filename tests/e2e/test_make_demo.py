"""`make demo`: the stack runs offline on the simulated market and its streams fill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import httpx
import msgspec
import pytest
import redis as sync_redis
from tests.support.servers import free_port, wait_for

from ofcommon import codec, keys
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    Bar,
    BookSnapshot,
    BookStats,
    Consumption,
    Message,
    PatternSignal,
    ProfileUpdate,
    Trade,
)
from ofcommon.simulator import EPISODE_PATTERNS, Label, read_labels

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = "sim,analytics,patterns,aggregator,alerts,api"  # what `make demo` starts
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD")  # the simulator's default instruments
MINUTE = 60_000_000_000


def _messages(r: sync_redis.Redis, symbol: str, kind: str) -> list[Message]:
    return [codec.decode(f[b"d"]) for _, f in r.xrange(keys.stream(symbol, kind))]


def _wait_for_kind(
    r: sync_redis.Redis, symbol: str, kind: str, match: Callable[[Message], bool]
) -> None:
    wait_for(lambda: any(map(match, _messages(r, symbol, kind))), 90, f"{symbol} {kind}")


def _last(r: sync_redis.Redis, symbol: str, kind: str, cls: type[Bar]) -> Bar:
    found = [m for m in _messages(r, symbol, kind) if isinstance(m, cls) and m.final]
    assert found
    return found[-1]


def _wide_bars(r: sync_redis.Redis, symbol: str) -> list[Bar]:
    """The final 1m bars of 10+ footprint rows, once at least three have imbalances and one a
    stacked run (else empty: keep waiting)."""
    bars = [
        m
        for m in _messages(r, symbol, "bars")
        if isinstance(m, Bar) and m.final and m.timeframe == "1m" and len(m.footprint) >= 10
    ]
    ok = sum(1 for b in bars if b.imbalances) >= 3 and any(b.stacked for b in bars)
    return bars if ok else []


@pytest.mark.timeout(240)
def test_demo_stack_publishes_the_simulated_market(clean_redis: str, free_tmp: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env |= {
        "OF_REDIS_URL": clean_redis,
        "OF_SIM_SPEED": "20",
        "OF_SIM_EPISODE_GAP_S": "30",
        "PYTHONUNBUFFERED": "1",
        "OF_API_PORT": str(port),  # not 8080: other stacks on this machine may hold it
    }
    var_dir = free_tmp / "var"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ofcommon.cli", "up", "--services", DEMO, "--var-dir", str(var_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(proc.stdout or ()),
        daemon=True,
    )
    reader.start()
    r = sync_redis.Redis.from_url(clean_redis)
    try:
        wait_for(lambda: any("healthy" in x and "all" in x for x in lines), 60, "all healthy")
        for symbol in ("BTCUSDT", "NAS100USDT", "EURUSD"):
            wait_for(lambda s=symbol: r.xlen(keys.stream(s, "trades")) > 50, 60, f"{symbol} trades")
            trades = [codec.decode(f[b"d"]) for _, f in r.xrange(keys.stream(symbol, "trades"))]
            assert any(isinstance(m, Trade) for m in trades)
            book = [
                codec.decode(f[b"d"]) for _, f in r.xrange(keys.stream(symbol, "book"), count=5)
            ]
            assert isinstance(book[0], BookSnapshot)
        # analytics turns the simulated market into every output stream the issue names
        for symbol in ("BTCUSDT", "EURUSD"):
            _wait_for_kind(r, symbol, "bars", lambda m: isinstance(m, Bar) and m.final)
            bar = _last(r, symbol, "bars", Bar)
            assert bar.footprint, "a bar carries its footprint"
            assert sum(x.bid_volume + x.ask_volume for x in bar.footprint) == pytest.approx(
                bar.volume
            )
            _wait_for_kind(r, symbol, "profile", lambda m: isinstance(m, ProfileUpdate))
            _wait_for_kind(r, symbol, "bookstats", lambda m: isinstance(m, BookStats) and m.valid)
            _wait_for_kind(r, symbol, "consumption", lambda m: isinstance(m, Consumption))
        # Footprints at the registry's footprint row: 10+ rows a minute with imbalances and
        # stacked runs where the flow has them (background minutes; episodes script a few ticks).
        registry = load_registry()
        for symbol in ("BTCUSDT", "NAS100USDT", "EURUSD"):
            row = registry.get(symbol).footprint_row
            wide = wait_for(
                lambda s=symbol: _wide_bars(r, s),
                120,
                f"{symbol} 1-minute bars of 10+ footprint rows",
            )
            for bar in wide:
                steps = [(b.price - a.price) / row for a, b in pairwise(bar.footprint)]
                assert all(abs(x - round(x)) < 1e-6 and round(x) >= 1 for x in steps), symbol
            assert any(b.imbalances for b in wide), symbol
            assert any(b.stacked for b in wide), symbol
        # the API serves them, behind the token the stack generated into var/ and printed
        token = (var_dir / "api_token").read_text().strip()
        assert any(f"http://127.0.0.1:{port}/" in x and token in x for x in lines)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        assert api.get("/api/candles/BTCUSDT").status_code == 401
        candles = api.get(
            "/api/candles/BTCUSDT", headers={"Authorization": f"Bearer {token}"}
        ).json()
        closed = [
            m
            for _, m in (
                (i, codec.decode(f[b"d"])) for i, f in r.xrange(keys.stream("BTCUSDT", "bars"))
            )
            if isinstance(m, Bar) and m.final and m.timeframe == "1m"
        ]
        assert {c["open_ts"] for c in candles if c["final"]} >= {b.open_ts for b in closed[:-1]}
        api.close()
        labels = var_dir / "sim" / "labels.jsonl"
        wait_for(lambda: labels.is_file() and labels.stat().st_size > 0, 60, "episode labels")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        r.close()


def _labels(path: Path) -> list[Label]:
    try:
        return list(read_labels(path)) if path.is_file() else []
    except msgspec.DecodeError:  # a line being written: read again on the next poll
        return []


def _kinds_on_episodes(r: sync_redis.Redis, labels_path: Path) -> set[str]:
    """The pattern kinds with a signal inside a labelled episode of the same pattern and
    direction (decision time within the episode's window, plus 2 minutes for the bar detectors
    that speak at a close)."""
    labels = _labels(labels_path)
    found: set[str] = set()
    for symbol in SYMBOLS:
        for m in _messages(r, symbol, "patterns"):
            assert isinstance(m, PatternSignal), m
            if any(
                lb.instrument == symbol
                and lb.pattern == m.pattern
                and lb.direction == int(m.direction)
                and lb.start_ns <= m.ts_event <= lb.end_ns + 2 * MINUTE
                for lb in labels
            ):
                found.add(m.pattern)
    return found


@pytest.mark.timeout(150)
def test_demo_shows_all_five_pattern_kinds_on_the_episodes(
    clean_redis: str, free_tmp: Path
) -> None:
    """The demo's simulator, analytics and patterns in their default configuration (the
    simulator 40 x faster, episodes every 30 s): every kind of pattern signal appears on the
    patterns streams, on the simulator's labelled episodes of that kind, within 90 s of the stack
    being healthy (the patterns' 20-bar warm-up takes 30 s of it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env |= {
        "OF_REDIS_URL": clean_redis,
        "OF_SIM_SPEED": "40",
        "OF_SIM_EPISODE_GAP_S": "30",
        "PYTHONUNBUFFERED": "1",
    }
    var_dir = free_tmp / "var"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ofcommon.cli",
            "up",
            "--services",
            "sim,analytics,patterns",
            "--var-dir",
            str(var_dir),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    r = sync_redis.Redis.from_url(clean_redis)
    labels = var_dir / "sim" / "labels.jsonl"
    try:
        wait_for(lambda: any("healthy" in x and "all" in x for x in lines), 60, "all healthy")
        wait_for(
            lambda: _kinds_on_episodes(r, labels) >= set(EPISODE_PATTERNS),
            90,
            "pattern signals of all five kinds on their episodes",
            every=2.0,
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        r.close()
