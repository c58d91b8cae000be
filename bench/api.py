"""The API under load: REST p50/p99 for one day of 1m candles and footprints beside the same
query on PostgreSQL directly; WebSocket fan-out (200 clients x 5 instruments, the simulated
market at 10x through analytics and patterns) beside a plain XREAD reader; the same with one
client that reads nothing.

    uv run python -m bench.api [--redis-url URL] [--clients 200] [--seconds 60] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets
from sqlalchemy import create_engine, pool, select
from tests.support.raw_ws import RawWebSocket

from bench import harness
from of_analytics.persist import AnalyticsStore
from ofcommon import keys
from ofcommon.db import migrate, to_sync_url
from ofcommon.messages import Bar, FootprintRow
from ofcommon.tables import bars_1m

HEADING = "## API: REST and WebSocket fan-out"
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD", "XAUUSDT", "GBPUSD")
CHANNELS = ["tick", "candle", "signal", "trade_state", "orderbook", "bias"]
CRITICAL = ("signal", "trade_state", "bias")
TOKEN = "bench-token"
MIN = 60_000_000_000
DAY_START = 28_333_333 * MIN


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


@contextlib.contextmanager
def database() -> Iterator[tuple[str, str]]:
    """(url, description): a fresh database on OF_DATABASE_URL's server, else embedded."""
    server = os.environ.get("OF_DATABASE_URL")
    if server:
        import psycopg
        from sqlalchemy.engine import make_url

        base = make_url(to_sync_url(server))
        name = f"of_bench_{uuid.uuid4().hex[:10]}"
        admin = base.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False), "external"
        finally:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from ofcommon.embedded import start_postgres

    tmp = Path(tempfile.mkdtemp(prefix="of-bench-pg-"))
    srv = start_postgres(tmp)
    try:
        yield srv.url, "embedded"
    finally:
        srv.stop()


def day_of_bars(rows: int = 30) -> list[Bar]:
    """1,440 closed 1m bars with ``rows`` footprint rows each (a busy instrument's day)."""
    rng = random.Random(7)
    out, price = [], 65_000.0
    for i in range(1440):
        o = price
        c = round(o + rng.uniform(-20, 20), 1)
        lo, hi = min(o, c) - 5, max(o, c) + 5
        fp = [
            FootprintRow(
                round(lo + k * (hi - lo) / rows, 1), rng.uniform(0, 3), rng.uniform(0, 3), 5
            )
            for k in range(rows)
        ]
        vol = sum(r.bid_volume + r.ask_volume for r in fp)
        t = DAY_START + i * MIN
        out.append(
            Bar(
                "1m",
                t,
                t + MIN,
                o,
                hi,
                lo,
                c,
                vol,
                vol / 2,
                vol / 2,
                0.0,
                -1.0,
                1.0,
                150,
                (o + c) / 2,
                fp[rows // 2].price,
                fp,
                True,
                1,
            )
        )
        price = c
    return out


def spawn(name: str, env: dict[str, str], log: Any, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ofcommon.cli", "run", name],
        env={**env, **extra},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=harness.ROOT,
    )


async def wait_api(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError("the api exited")
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get(url + "/healthz")).json().get("hub_ready"):
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the api did not start")


async def rest(url: str, db_url: str, repeat: int) -> list[tuple[str, float, float]]:
    """(label, p50 ms, p99 ms) of the day of candles / footprints, API and direct SQL."""
    engine = create_engine(to_sync_url(db_url), poolclass=pool.NullPool)
    q = (
        select(bars_1m)
        .where(bars_1m.c.symbol == "BTCUSDT")
        .order_by(bars_1m.c.open_ts.desc())
        .limit(1440)
    )
    direct: list[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        with engine.connect() as c:
            rows = c.execute(q).mappings().all()
        assert len(rows) == 1440
        direct.append((time.perf_counter() - t) * 1000)
    engine.dispose()
    out = [
        (
            "PostgreSQL query of the 1,440 rows, SQLAlchemy (baseline)",
            pct(direct, 0.5),
            pct(direct, 0.99),
        )
    ]
    h = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        for label, path, params in (
            ("`GET /api/candles/BTCUSDT?count=1440`", "/api/candles/BTCUSDT", {"count": 1440}),
            ("`GET /api/footprint/BTCUSDT?count=1440`", "/api/footprint/BTCUSDT", {"count": 1440}),
            (
                "`GET /api/candles/BTCUSDT?tf=1h&count=24`",
                "/api/candles/BTCUSDT",
                {"tf": "1h", "count": 24},
            ),
        ):
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                resp = await c.get(path, params=params)
                resp.raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            out.append((label, pct(times, 0.5), pct(times, 0.99)))
    return out


class Fanout:
    """``n`` WebSocket clients in this process: latency from the stream entry's id (Redis
    server ms) to receipt, per channel, and sequence gaps per (client, channel, instrument)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.received: Counter[str] = Counter()
        self.gaps: Counter[str] = Counter()
        self.closed: list[tuple[int, str]] = []
        self.measuring = False
        self.ready = 0  # clients that have every snapshot

    async def client(self, url: str, stop: asyncio.Event) -> None:
        seq: dict[tuple[str, str], int] = {}
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, max_size=None
        ) as ws:
            await ws.send(
                json.dumps({"op": "subscribe", "channels": CHANNELS, "symbols": list(SYMBOLS)})
            )
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed as exc:
                    self.closed.append(
                        (exc.rcvd.code if exc.rcvd else 0, exc.rcvd.reason if exc.rcvd else "")
                    )
                    return
                now = time.time() * 1000
                msg = json.loads(raw)
                ch = msg["channel"]
                key = (ch, msg["symbol"])
                if msg["snapshot"]:
                    seq[key] = 0
                    if len(seq) == len(CHANNELS) * len(SYMBOLS):
                        self.ready += 1
                    continue
                if key in seq and msg["seq"] != seq[key] + 1:
                    self.gaps[ch] += msg["seq"] - seq[key] - 1
                seq[key] = msg["seq"]
                if self.measuring and msg["id"]:
                    self.lat[ch].append(now - int(msg["id"].split("-")[0]))
                    self.received[ch] += 1


async def baseline(redis_url: str, stop: asyncio.Event, fan: Fanout) -> dict[str, list[float]]:
    """A plain XREAD reader of the same streams: entry id to receipt."""
    r = aioredis.Redis.from_url(redis_url)
    kinds = {"trades": "tick", "bars": "candle", "patterns": "signal", "bookstats": "orderbook"}
    pos: dict[Any, Any] = {}
    lat: dict[str, list[float]] = defaultdict(list)
    try:
        for s in SYMBOLS:
            for k in kinds:
                top: Any = await r.xrevrange(keys.stream(s, k), count=1)
                pos[keys.stream(s, k)] = top[0][0].decode() if top else "0-0"
        while not stop.is_set():
            reply: Any = await r.xread(pos, count=1000, block=500)
            now = time.time() * 1000
            for name, entries in reply or ():
                _, kind = keys.parse_stream(name.decode())
                for eid, _ in entries:
                    pos[name.decode()] = eid.decode()
                    if fan.measuring:
                        lat[kinds[kind]].append(now - int(eid.split(b"-")[0]))
    finally:
        await r.aclose()
    return lat


async def fanout_run(
    api_url: str, redis_url: str, clients: int, seconds: float, slow: bool
) -> dict[str, Any]:
    fan = Fanout(clients)
    stop = asyncio.Event()
    ws_url = api_url.replace("http://", "ws://") + "/ws"
    tasks = [asyncio.create_task(fan.client(ws_url, stop)) for _ in range(clients)]
    base = asyncio.create_task(baseline(redis_url, stop, fan))
    slow_ws = None
    kicked_after = None
    if slow:
        host, port = api_url.removeprefix("http://").split(":")
        slow_ws = await asyncio.to_thread(
            RawWebSocket, host, int(port), "/ws", {"Authorization": f"Bearer {TOKEN}"}
        )
        slow_ws.send_text(json.dumps({"op": "subscribe", "channels": "*", "symbols": "*"}))
    t_sub = time.perf_counter()
    while fan.ready < clients and time.perf_counter() - t_sub < 300:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    subscribed_s = time.perf_counter() - t_sub
    await asyncio.sleep(2)
    fan.measuring = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    fan.measuring = False
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat_base = await base
    result: dict[str, Any] = {
        "fan": fan,
        "base": lat_base,
        "elapsed": time.perf_counter() - t0,
        "subscribed_s": subscribed_s,
    }
    if slow_ws is not None:
        t = time.perf_counter()
        frames, code, reason = await asyncio.to_thread(slow_ws.read_until_close, 60)
        kicked_after = time.perf_counter() - t
        result["slow"] = (frames, code, reason, kicked_after)
        slow_ws.close()
    async with httpx.AsyncClient(timeout=300) as c:  # an overloaded API answers late
        m = (await c.get(api_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    result["conflated"] = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in m.splitlines()
        if line.startswith("of_api_ws_conflated_total{")
    }
    return result


def table(res: dict[str, Any], clients: int) -> str:
    fan: Fanout = res["fan"]
    base = res["base"]
    rows = [
        "| Channel | API p50 ms | API p99 ms | received | seq gaps | conflated away"
        " | plain XREAD p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ch in CHANNELS:
        lat = fan.lat.get(ch, [])
        b = base.get(ch, [])
        rows.append(
            f"| {ch}{' (critical)' if ch in CRITICAL else ''} | {pct(lat, 0.5):.1f}"
            f" | {pct(lat, 0.99):.1f}"
            f" | {fan.received[ch]:,} | {fan.gaps[ch]} | {res['conflated'].get(ch, 0):,.0f}"
            f" | {pct(b, 0.5):.1f} | {pct(b, 0.99):.1f} |"
        )
    closed = (
        f"; {len(fan.closed)} of the {clients} clients were closed:"
        f" {Counter(fan.closed).most_common(3)}"
        if fan.closed
        else ""
    )
    return (
        "\n".join(rows)
        + f"\n\n{fan.ready} of {clients} clients had all {len(CHANNELS) * len(SYMBOLS)}"
        f" snapshots {res['subscribed_s']:.1f} s after connecting; measured for"
        f" {res['elapsed']:.0f} s{closed}."
    )


async def run(args: argparse.Namespace) -> str:
    with (
        harness.redis_server(args.redis_url) as (redis_url, where),
        database() as (db_url, db_where),
    ):
        r = aioredis.Redis.from_url(redis_url)
        await r.flushdb()
        await harness.quiet_embedded(r, where)
        await r.aclose()
        migrate(db_url)
        store = AnalyticsStore(db_url)
        store.write_bars("BTCUSDT", day_of_bars())
        store.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
        env |= {
            "OF_REDIS_URL": redis_url,
            "OF_DATABASE_URL": db_url,
            "OF_LOG_LEVEL": "WARNING",
            "OF_INSTRUMENTS": ",".join(SYMBOLS),
        }
        port = 18000 + random.randint(0, 999)
        api_url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory(prefix="of-bench-api-") as tmp:
            logs = {
                n: (Path(tmp) / f"{n}.log").open("ab")  # before anything is timed
                for n in ("api", "analytics", "patterns", "sim")
            }
            procs = [spawn("api", env, logs["api"], OF_API_TOKEN=TOKEN, OF_API_PORT=str(port))]
            try:
                await wait_api(api_url, procs[0])
                rest_rows = await rest(api_url, db_url, args.repeat)
                procs.append(spawn("analytics", env, logs["analytics"]))
                procs.append(spawn("patterns", env, logs["patterns"]))
                procs.append(
                    spawn(
                        "sim",
                        env,
                        logs["sim"],
                        OF_SIM_SPEED="10",
                        OF_SIM_INSTRUMENTS=",".join(SYMBOLS),
                        OF_SIM_LABELS_PATH="",
                    )
                )
                await asyncio.sleep(10)  # the stages start and the market flows
                fast = await fanout_run(api_url, redis_url, args.clients, args.seconds, slow=False)
                slow = await fanout_run(api_url, redis_url, args.clients, args.seconds, slow=True)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(30)
                for f in logs.values():
                    f.close()
    rest_table = "| Request | p50 ms | p99 ms |\n|---|---:|---:|\n" + "\n".join(
        f"| {label} | {a:.1f} | {b:.1f} |" for label, a, b in rest_rows
    )
    frames, code, reason, _ = slow["slow"]
    return (
        f"Redis: {where}; PostgreSQL: {db_where}; load average {harness.load_average()}.\n\n"
        f"**REST**, one day (1,440) of stored 1m BTCUSDT bars with 30 footprint rows each, "
        f"{args.repeat} requests each:\n\n{rest_table}\n\n"
        f"**WebSocket fan-out**: {args.clients} clients in one process, each subscribed to"
        f" {', '.join(CHANNELS)} of {len(SYMBOLS)} instruments ({', '.join(SYMBOLS)}); the"
        " simulator at 10x through analytics and patterns (services). Latency: the stream"
        " entry's id (Redis server time of the XADD) to the client's receipt; baseline: one plain"
        " XREAD reader of the same streams in the same process. Sequence gaps count messages"
        " lost between two a client received; `conflated away` is the server's count of"
        " superseded updates (all clients).\n\n"
        f"{table(fast, args.clients)}\n\n"
        f"**Slow client**: the same with one more client (a bare socket, 4 kB receive buffer)"
        f" subscribed to every channel and instrument that reads nothing. It was closed with"
        f" code {code} (`{reason}`) after {frames:,} frames; the others:\n\n"
        f"{table(slow, args.clients)}\n"
    )


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--repeat", type=int, default=30, help="REST requests per case")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    args = p.parse_args(argv)
    body = asyncio.run(run(args))
    print(f"{HEADING}\n\n{body}")
    if args.out:
        harness.write_section(
            args.out, HEADING, f"`{command or harness.command_line('bench.api', argv)}`\n\n{body}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
