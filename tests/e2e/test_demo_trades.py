"""`make demo`'s issue-11 done-when: on the simulated market the stack (sim, analytics, patterns,
aggregator) journals entries, break-evens, trails and exits, and `ofx tail` shows them.

The market is the demo's (docs/aggregator.md "make demo"): EURUSD from 23:00 UTC, so its session
completes after an hour of event time and the next one is framed, seed 7, episodes every ~45 s,
here at 60 times real time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis as sync_redis
from sqlalchemy import create_engine, pool, select
from tests.support.servers import wait_for

from ofcommon import codec, keys
from ofcommon.db import to_sync_url
from ofcommon.instruments import load_registry
from ofcommon.messages import Direction, TradeEvent
from ofcommon.tables import journal_events, journal_trades

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = "sim,analytics,patterns,aggregator,alerts,api"  # what `make demo` starts
SYMBOL = "EURUSD"
KINDS = ("entry", "breakeven", "trail", "exit")


def _events(r: sync_redis.Redis) -> list[TradeEvent]:
    out = []
    for _, f in r.xrange(keys.stream(SYMBOL, "tradeevents")):
        msg = codec.decode(f[b"d"])
        assert isinstance(msg, TradeEvent)
        out.append(msg)
    return out


def _closed_managed_trade(r: sync_redis.Redis) -> list[TradeEvent]:
    """The events once one trade has entered, broken even, trailed and exited (else [])."""
    events = _events(r)
    for trade_id in {e.trade_id for e in events if e.kind == "exit"}:
        kinds = {e.kind for e in events if e.trade_id == trade_id}
        if set(KINDS) <= kinds:
            return events
    return []


@pytest.mark.timeout(200)
def test_demo_journals_entries_breakevens_trails_and_exits(
    clean_redis: str, database_url: str, free_tmp: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env |= {
        "OF_REDIS_URL": clean_redis,
        "OF_DATABASE_URL": database_url,
        "OF_SIM_INSTRUMENTS": SYMBOL,
        "OF_SIM_START": "2024-03-05T23:00:00Z",
        "OF_SIM_SEED": "7",
        "OF_SIM_EPISODE_GAP_S": "45",
        "OF_SIM_SPEED": "60",
        "PYTHONUNBUFFERED": "1",
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
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    r = sync_redis.Redis.from_url(clean_redis)
    engine = create_engine(to_sync_url(database_url), poolclass=pool.NullPool)
    try:
        wait_for(lambda: any("healthy" in x and "all" in x for x in lines), 60, "all healthy")
        events = wait_for(lambda: _closed_managed_trade(r), 150, "a managed trade on the stream")
        tick = load_registry().get(SYMBOL).tick_size
        # Every exit's P&L is the prices it reports, in ticks and in R of the initial risk.
        entries = {e.trade_id: e for e in events if e.kind == "entry"}
        for x in (e for e in events if e.kind == "exit"):
            entry = entries[x.trade_id]
            pnl = (x.price - entry.price) * x.direction
            assert x.pnl_ticks == pytest.approx(pnl / tick, abs=1e-6)
            assert x.r_multiple == pytest.approx(
                pnl / ((entry.price - entry.stop) * entry.direction), abs=1e-6
            )
        # A break-even moves the stop to the entry, a trail only tightens it.
        for trade_id, entry in entries.items():
            moves = [e for e in events if e.trade_id == trade_id and e.kind in KINDS[:3]]
            stops = [e.stop for e in moves]
            assert stops == sorted(stops, reverse=entry.direction is Direction.SHORT)
            assert all(e.stop == entry.price for e in moves if e.kind == "breakeven")
        # The journal holds what the stream holds (it is written before the stream).
        with engine.connect() as conn:
            ev = journal_events.c
            rows = conn.execute(
                select(ev.event_id, ev.kind).where(ev.symbol == SYMBOL, ev.kind.in_(KINDS))
            ).all()
            trades = conn.execute(
                select(journal_trades).where(journal_trades.c.exit_ts.is_not(None))
            ).all()
        streamed = {(e.event_id, e.kind) for e in events if e.kind in KINDS}
        assert streamed <= {(a, b) for a, b in rows}
        assert {k for _, k in rows} >= set(KINDS)
        exits = {e.trade_id: e for e in events if e.kind == "exit"}
        # The journal may hold a trade that closed after the stream was read: only those read.
        trades = [t for t in trades if t.trade_id in exits]
        assert {t.trade_id for t in trades} == set(exits)
        for t in trades:
            x = exits[t.trade_id]
            assert (t.exit_price, t.exit_reason, t.pnl_ticks) == (x.price, x.reason, x.pnl_ticks)
            assert t.stops[0][2] == "entry"
        managed = [t for t in trades if {"breakeven", "trail"} <= {s[2] for s in t.stops}]
        assert managed, "a closed trade whose stop was moved to break-even and trailed"
        # `ofx tail` prints them from the stream.
        tail = subprocess.run(
            [
                sys.executable,
                "-m",
                "ofcommon.cli",
                "tail",
                keys.stream(SYMBOL, "tradeevents"),
                "--from",
                "0",
                "--count",
                "10000",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        printed = [json.loads(x)["msg"] for x in tail.stdout.splitlines()]
        assert {m["kind"] for m in printed} >= set(KINDS)
        assert {m["event_id"] for m in printed} >= {e.event_id for e in events}
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
        engine.dispose()
