"""The journal endpoints against the aggregator service: a deterministic multi-day market
(tests/support/aggregator_market) goes through the real aggregator, which frames, trades and
journals it in PostgreSQL; /api/journal (filters, paging), /api/performance, /api/signals,
/api/bias and /api/trade are checked against those tables and streams read directly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from sqlalchemy import create_engine, pool, select
from tests.support.aggregator_market import market
from tests.support.api_stack import Stack, pipeline, wait_quiet
from tests.support.servers import spawn_service, stop

from ofcommon import codec, keys
from ofcommon.bus import Producer
from ofcommon.db import migrate, to_sync_url
from ofcommon.instruments import load_registry
from ofcommon.messages import Bias, StrategyStatus
from ofcommon.tables import journal_events, journal_trades

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

SYMBOLS = {"BTCUSDT": 60_000.0, "EURUSD": 1.1}
MIDNIGHT = 1_700_006_400 * 1_000_000_000
NS = 1_000_000_000
DAYS = 6


async def _publish(url: str) -> None:
    reg = load_registry()
    client = aioredis.Redis.from_url(url)
    try:
        producer = Producer(client, service="test", trim_by_age=False)
        for symbol, base in SYMBOLS.items():
            for kind, msg in market(reg.get(symbol), base, MIDNIGHT, DAYS, seed=11):
                producer.add(keys.stream(symbol, kind), msg)
                await producer.flush()  # one at a time: entry ids follow event time
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def stack(
    redis_url: str, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    r = sync_redis.Redis.from_url(redis_url)
    r.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env.update(
        OF_REDIS_URL=redis_url,
        OF_LOG_FORMAT="json",
        OF_DATABASE_URL=module_database_url,
        OF_INSTRUMENTS=",".join(SYMBOLS),
    )
    log_dir = tmp_path_factory.mktemp("api-journal")
    migrate(module_database_url)
    asyncio.run(_publish(redis_url))
    agg = spawn_service("aggregator", env, log_dir, "aggregator")
    try:
        wait_quiet(r, list(SYMBOLS), 120, ["aggregator"])
    finally:
        stop(agg)
        r.close()
    with pipeline(env, module_database_url, log_dir, list(SYMBOLS), sim=None, stages=()) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as c:
        yield c


@pytest.fixture(scope="module")
def trades(stack: Stack) -> list[dict[str, Any]]:
    engine = create_engine(to_sync_url(stack.database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as c:
            rows = [dict(r) for r in c.execute(select(journal_trades)).mappings()]
    finally:
        engine.dispose()
    assert len(rows) >= DAYS, "the aggregator entered a trade most days"
    return rows


def _newest_first(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = sorted(rows, key=lambda t: (t["symbol"], t["trade_id"]))
    rows.sort(key=lambda t: t["entry_ts"], reverse=True)
    return [(t["symbol"], t["trade_id"]) for t in rows]


def test_journal_pages_through_every_trade(api: httpx.Client, trades: list[dict[str, Any]]) -> None:
    seen: list[tuple[str, str]] = []
    page = 1
    while True:
        body = api.get("/api/journal", params={"page": page, "page_size": 4}).json()
        assert body["total"] == len(trades)
        assert body["pages"] == (len(trades) + 3) // 4
        seen += [(t["symbol"], t["trade_id"]) for t in body["trades"]]
        if page >= body["pages"]:
            break
        page += 1
    assert seen == _newest_first(trades)
    one = api.get("/api/journal", params={"page_size": 500}).json()["trades"]
    by_id = {(t["symbol"], t["trade_id"]): t for t in trades}
    for t in one:
        row = by_id[(t["symbol"], t["trade_id"])]
        assert (t["entry_price"], t["stop"], t["target"], t["grade"]) == (
            row["entry_price"],
            row["stop"],
            row["target"],
            row["grade"],
        )
        assert t["r_multiple"] == row["r_multiple"]
        assert t["open"] == (row["exit_ts"] is None)


def test_journal_filters(api: httpx.Client, trades: list[dict[str, Any]]) -> None:
    eur = api.get("/api/journal", params={"symbol": "EURUSD", "page_size": 500}).json()
    assert eur["total"] == sum(t["symbol"] == "EURUSD" for t in trades)
    assert {t["symbol"] for t in eur["trades"]} <= {"EURUSD"}
    cut = sorted(t["entry_ts"] for t in trades)[len(trades) // 2] // NS
    late = api.get("/api/journal", params={"start": cut, "page_size": 500}).json()
    assert late["total"] == sum(t["entry_ts"] >= cut * NS for t in trades)
    early = api.get("/api/journal", params={"end": cut, "page_size": 500}).json()
    assert early["total"] + late["total"] == len(trades)
    grades = sorted({t["grade"] for t in trades})
    g = api.get("/api/journal", params={"grade": grades[0], "page_size": 500}).json()
    assert g["total"] == sum(t["grade"] == grades[0] for t in trades)
    closed = api.get("/api/journal", params={"closed": "true", "page_size": 500}).json()
    assert closed["total"] == sum(t["exit_ts"] is not None for t in trades)
    # every entry of this market is taken on an absorption; no trade is on a divergence
    absorbed = api.get("/api/journal", params={"pattern": "absorption", "page_size": 500}).json()
    expect = sum(any(s.startswith("absorption-") for s in t["signals"]) for t in trades)
    assert absorbed["total"] == expect
    assert expect > 0
    assert api.get("/api/journal", params={"pattern": "divergence"}).json()["total"] == 0
    assert api.get("/api/journal", params={"symbol": "NOPE"}).status_code == 404


def test_performance_against_the_closed_trades(
    api: httpx.Client, trades: list[dict[str, Any]]
) -> None:
    closed = sorted(
        (t for t in trades if t["exit_ts"] is not None),
        key=lambda t: (t["exit_ts"], t["symbol"], t["trade_id"]),
    )
    rs = [t["r_multiple"] for t in closed if t["r_multiple"] is not None]
    assert rs
    p = api.get("/api/performance").json()
    assert p["trades"] == len(closed)
    assert p["win_rate"] == pytest.approx(sum(r > 0 for r in rs) / len(rs))
    assert p["expectancy_r"] == pytest.approx(sum(rs) / len(rs))
    running, curve = 0.0, []
    for r in rs:
        running += r
        curve.append(running)
    assert [e["equity_r"] for e in p["equity_curve"]] == pytest.approx(curve)
    assert sum(b["count"] for b in p["r_distribution"]) == len(rs)
    btc = api.get("/api/performance", params={"symbol": "BTCUSDT"}).json()
    assert btc["trades"] == sum(t["symbol"] == "BTCUSDT" for t in closed)


def test_signals_bias_and_trade(api: httpx.Client, stack: Stack) -> None:
    engine = create_engine(to_sync_url(stack.database_url), poolclass=pool.NullPool)
    with engine.connect() as c:
        q = (
            select(journal_events.c.event_id)
            .where(journal_events.c.symbol == "BTCUSDT")
            .order_by(journal_events.c.ts_event.desc(), journal_events.c.event_id.desc())
            .limit(30)
        )
        ids = [r[0] for r in c.execute(q)]
    engine.dispose()
    got = api.get("/api/signals/BTCUSDT", params={"limit": 30}).json()
    assert [s["event_id"] for s in got] == ids
    r = sync_redis.Redis.from_url(stack.redis_url)
    biases = [codec.decode(f[b"d"]) for _, f in r.xrange(keys.stream("BTCUSDT", "bias"))]
    statuses = [codec.decode(f[b"d"]) for _, f in r.xrange(keys.stream("BTCUSDT", "status"))]
    r.close()
    last = biases[-1]
    assert isinstance(last, Bias)
    b = api.get("/api/bias/BTCUSDT").json()
    assert (b["session_id"], b["poc"], b["vah"], b["val"]) == (
        last.session_id,
        last.poc,
        last.vah,
        last.val,
    )
    assert b["direction"] == {1: "long", -1: "short", 0: "neutral"}[int(last.bias)]
    st = statuses[-1]
    assert isinstance(st, StrategyStatus)
    t = api.get("/api/trade/BTCUSDT").json()
    assert t["phase"] == st.phase
    markers = api.get("/api/markers/BTCUSDT", params={"limit": 500}).json()
    assert any(m["text"].startswith("ENTRY") for m in markers)
    assert any(m["text"] == "EXIT" for m in markers)
