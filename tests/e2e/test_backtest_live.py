"""Backtest = live (issue 12): a real recording replayed with ``ofx replay --ids derived`` into
the running analytics, patterns and aggregator services (real Redis and PostgreSQL) leaves the
journal the backtest writes, row for row, and every output stream, entry ID for entry ID."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from sqlalchemy import create_engine, pool, select
from tests.support.backtest_data import binance_recording
from tests.support.real_data import BINANCE_SPOT, REPO, require
from tests.support.servers import spawn_service, stop, wait_for

from of_backtest.run import live_registry, pipeline, run
from of_backtest.source import Intake, recordings
from ofcommon import codec, keys
from ofcommon.db import migrate, to_sync_url
from ofcommon.tables import journal_bias, journal_events, journal_signals, journal_trades

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

SYMBOL = "BTCUSDT"
STAGES = {
    "analytics": ("of_analytics.service:SERVICE", ("trades", "book")),
    "patterns": ("of_patterns.service:SERVICE", ("bars", "bookstats", "consumption")),
    "aggregator": ("of_aggregator.service:SERVICE", ("profile", "bars", "patterns")),
}
# The capture spans 5.8 minutes: with the default 20-bar warm-up no detector may speak. Two bars
# and the registry's fixed thresholds give a pattern signal, so the patterns stream is compared.
TUNING = {"OF_PATTERNS_WARMUP_BARS": "2", "OF_PATTERNS_THRESHOLD_MODE": "fixed"}
OUTPUTS = (
    "bars",
    "profile",
    "bookstats",
    "consumption",
    "patterns",
    "bias",
    "tradeevents",
    "status",
)


def _settled(r: sync_redis.Redis) -> bool:
    """Every stage's group has read and acknowledged every entry of its inputs."""
    for stage, (_, inputs) in STAGES.items():
        for kind in inputs:
            stream = keys.stream(SYMBOL, kind)
            if not r.exists(stream):
                continue
            groups = {g["name"].decode(): g for g in r.xinfo_groups(stream)}
            g = groups.get(stage)
            top = r.xrevrange(stream, count=1)
            if g is None or g["pending"] or (top and g["last-delivered-id"] != top[0][0]):
                return False
    return True


def _snapshot(r: sync_redis.Redis) -> dict[str, list[tuple[str, bytes]]]:
    return {
        k: [(i.decode(), f[codec.FIELD]) for i, f in r.xrange(keys.stream(SYMBOL, k))]
        for k in OUTPUTS
    }


def _pg(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ev, tr, bi = journal_events.c, journal_trades.c, journal_bias.c
            return {
                "events": [
                    dict(r._mapping)
                    for r in conn.execute(select(journal_events).order_by(ev.ts_event, ev.event_id))
                ],
                "trades": [
                    dict(r._mapping)
                    for r in conn.execute(select(journal_trades).order_by(tr.entry_ts, tr.trade_id))
                ],
                "bias": [
                    dict(r._mapping)
                    for r in conn.execute(select(journal_bias).order_by(bi.ts_event))
                ],
                "signals": [dict(r._mapping) for r in conn.execute(select(journal_signals))],
            }
    finally:
        engine.dispose()


def test_a_real_recording_backtests_to_the_live_journal_and_streams(
    service_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require(BINANCE_SPOT)
    paths = binance_recording(tmp_path / "rec")
    migrate(database_url)
    env = {**service_env, "OF_DATABASE_URL": database_url, "OF_INSTRUMENTS": SYMBOL, **TUNING}
    for name, value in TUNING.items():  # the backtest reads the stages' settings too
        monkeypatch.setenv(name, value)
    r = sync_redis.Redis.from_url(env["OF_REDIS_URL"])
    procs = [
        spawn_service(target, env, tmp_path / "logs", stage)
        for stage, (target, _) in STAGES.items()
    ]
    try:
        replayed = subprocess.run(
            [sys.executable, "-m", "ofcommon.cli", "replay", "--ids", "derived", *map(str, paths)],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert replayed.returncode == 0, replayed.stderr.decode()[-2000:]

        def quiet() -> dict[str, list[tuple[str, bytes]]] | None:
            if not _settled(r):
                return None
            before = _snapshot(r)
            time.sleep(1.0)  # nothing more comes: a stage's held outputs are out
            return before if _settled(r) and _snapshot(r) == before else None

        live = wait_for(quiet, 150, "the three stages to fold the whole replay", every=0.5)
    finally:
        for p in procs:
            stop(p)
    journal = _pg(database_url)

    registry = live_registry()
    intake = Intake()
    result = run(recordings(paths, registry, intake), intake, pipeline(registry, record=True))
    streams = result.pipeline.streams
    assert streams is not None
    backtest = {
        k: [(str(e.id), codec.encode(e.msg)) for e in streams.get((SYMBOL, k), [])] for k in OUTPUTS
    }
    # Every output stream, entry IDs and encoded messages alike.
    for kind in OUTPUTS:
        assert backtest[kind] == live[kind], kind
    assert len(live["bars"]) > 700
    assert len(live["consumption"]) > 4000
    assert live["patterns"]
    assert live["bias"]
    # The journal, row for row.
    assert result.journal.events == journal["events"]
    assert result.journal.trades == journal["trades"]
    assert result.journal.bias == journal["bias"]
    assert journal["bias"]
    assert journal["events"]
    # The signals journal holds each pattern signal the backtest exports, as published.
    published = [codec.decode(d) for _, d in backtest["patterns"]]
    assert sorted(
        (row["signal_id"], row["ts_event"], row["pattern"], row["price"])
        for row in journal["signals"]
    ) == sorted((p.signal_id, p.ts_event, p.pattern, p.price) for p in published)
