"""Every market endpoint against a replayed real recording: the Binance BTCUSDT capture as Bybit
frames through ``ofx replay --ids derived`` into analytics, patterns and aggregator, then the API;
each answer is checked against a plain calculation over the capture's own trades and depth."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from tests.support.api_stack import TOKEN, Stack, start_api, wait_quiet
from tests.support.backtest_data import binance_recording
from tests.support.binance_frames import binance_lines
from tests.support.real_data import BINANCE_SPOT, REPO, require
from tests.support.servers import spawn_service, stop

from ofcommon.db import migrate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

SYMBOL = "BTCUSDT"
NS = 1_000_000_000
MIN = 60 * NS
STAGES = ("analytics", "patterns", "aggregator")
# 5.8 minutes of capture: two warm-up bars and fixed thresholds let the detectors speak.
TUNING = {"OF_PATTERNS_WARMUP_BARS": "2", "OF_PATTERNS_THRESHOLD_MODE": "fixed"}
# The instrument's grid as the registry states it (Bybit linear BTCUSDT), written out here: tick
# 0.1, footprint rows of 20 ticks, profile rows of 10.0 USD.
TICK = Decimal("0.1")
FOOTPRINT_TICKS = 20
PROFILE_TICKS = 100
PARTIAL_MS = 250  # of_analytics.fold.PARTIAL_NS, as documented


# --- the plain references, straight from the capture ---------------------------------------


class Print:
    __slots__ = ("buy", "price", "size", "text", "trade_id", "ts")

    def __init__(self, d: dict[str, Any]) -> None:
        self.ts = int(d["T"]) * 1_000_000
        self.text = d["p"]
        self.price = float(d["p"])
        self.size = float(d["q"])
        self.buy = not d["m"]  # the buyer was the maker: the seller was the aggressor
        self.trade_id = str(d["t"])

    def ticks(self) -> int:
        return int((Decimal(self.text) / TICK).to_integral_value(ROUND_HALF_EVEN))


class Capture:
    """The capture's trades in arrival order and its book after the last depth diff."""

    def __init__(self, path: Path) -> None:
        self.prints: list[Print] = []
        snapshot: dict[str, Any] | None = None
        diffs: list[dict[str, Any]] = []
        for _, obj in binance_lines(path):
            if "lastUpdateId" in obj:
                snapshot = obj
                continue
            stream, data = obj["stream"], obj["data"]
            if stream.endswith("@trade"):
                self.prints.append(Print(data))
            elif "@depth" in stream:
                diffs.append(data)
        assert snapshot is not None
        self.bids = {float(p): float(q) for p, q in snapshot["bids"]}
        self.asks = {float(p): float(q) for p, q in snapshot["asks"]}
        for d in diffs:
            if d["u"] <= snapshot["lastUpdateId"]:
                continue
            for side, levels in ((self.bids, d["b"]), (self.asks, d["a"])):
                for p, q in levels:
                    if float(q) == 0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = float(q)

    def minutes(self) -> dict[int, list[Print]]:
        """Trades by minute open; a trade older than the open minute is late and not in a bar."""
        out: dict[int, list[Print]] = defaultdict(list)
        last = -1
        for t in self.prints:
            start = t.ts - t.ts % MIN
            if start < last:
                continue
            last = start
            out[start].append(t)
        return dict(out)

    def bars(self) -> dict[int, list[Print]]:
        """The trades each 1m bar the API serves holds: every closed minute whole, the open one
        (the newest) as of the last partial bar analytics published. A partial goes out after a
        trade at least ``PARTIAL_MS`` of event time after the previous one (docs/analytics.md);
        the replay ends without a heartbeat, so the open bar is the prefix up to that trade."""
        minutes = self.minutes()
        newest = max(minutes)
        # the throttle carries over from the minute before: replay it over every trade
        due, published = 0, 0
        for start in sorted(minutes):
            for i, t in enumerate(minutes[start], 1):
                if t.ts >= due:
                    due = t.ts + PARTIAL_MS * 1_000_000
                    if start == newest:
                        published = i
        return {**minutes, newest: minutes[newest][:published]}


def _session(ts: int) -> int:
    """BTCUSDT's session is the UTC day (FULL_DAY): the day's number."""
    return ts // (86_400 * NS)


def _signed(trades: list[Print]) -> float:
    return math.fsum(t.size if t.buy else -t.size for t in trades)


@pytest.fixture(scope="module")
def capture() -> Capture:
    return Capture(require(BINANCE_SPOT))


@pytest.fixture(scope="module")
def stack(
    redis_url: str, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    require(BINANCE_SPOT)
    r = sync_redis.Redis.from_url(redis_url)
    r.flushdb()
    tmp = tmp_path_factory.mktemp("api-real")
    paths = binance_recording(tmp / "rec")
    migrate(module_database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    env.update(
        OF_REDIS_URL=redis_url,
        OF_LOG_FORMAT="json",
        OF_DATABASE_URL=module_database_url,
        OF_INSTRUMENTS=SYMBOL,
        **TUNING,
    )
    procs = {name: spawn_service(name, env, tmp / "logs", name) for name in STAGES}
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
        wait_quiet(r, (SYMBOL,), 120, STAGES)
        procs["api"], url = start_api(env, tmp / "logs", (SYMBOL,))
        yield Stack(url, TOKEN, redis_url, module_database_url, (SYMBOL,), procs)
    finally:
        for proc in procs.values():
            stop(proc)
        r.close()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as c:
        yield c


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# --- the tests ------------------------------------------------------------------------------


def test_candles_are_the_plain_minutes_of_the_capture(api: httpx.Client, capture: Capture) -> None:
    minutes = capture.bars()
    got = api.get(f"/api/candles/{SYMBOL}", params={"count": 5000}).json()
    assert len(minutes) >= 5
    assert [c["open_ts"] for c in got] == sorted(minutes)
    for c in got:
        g = minutes[c["open_ts"]]
        assert c["time"] == c["open_ts"] // NS
        assert (c["open"], c["close"]) == (g[0].price, g[-1].price)
        assert (c["high"], c["low"]) == (max(t.price for t in g), min(t.price for t in g))
        assert c["trades"] == len(g)
        buy = math.fsum(t.size for t in g if t.buy)
        sell = math.fsum(t.size for t in g if not t.buy)
        assert _close(c["volume"], buy + sell)
        assert _close(c["buy_volume"], buy)
        assert _close(c["sell_volume"], sell)
        assert _close(c["delta"], buy - sell)
        vwap = math.fsum(t.price * t.size for t in g) / (buy + sell)
        assert math.isclose(c["vwap"], vwap, rel_tol=1e-12)
    # every minute but the newest is closed (stored); the newest is the open bar of the stream
    assert [c["final"] for c in got] == [True] * (len(got) - 1) + [False]


def test_footprint_rows_are_the_plain_rows(api: httpx.Client, capture: Capture) -> None:
    minutes = capture.bars()
    got = api.get(f"/api/footprint/{SYMBOL}", params={"count": 2000}).json()
    assert [b["open_ts"] for b in got] == sorted(minutes)
    for bar in got:
        cells: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        for t in minutes[bar["open_ts"]]:
            row = cells[t.ticks() // FOOTPRINT_TICKS]
            row[1 if t.buy else 0] += t.size
            row[2] += 1
        levels = bar["levels"]
        assert [lv["price"] for lv in levels] == [
            float(k * FOOTPRINT_TICKS * TICK) for k in sorted(cells)
        ]
        for lv, k in zip(levels, sorted(cells), strict=True):
            bid, ask, n = cells[k]
            assert _close(lv["bid"], bid), (bar["open_ts"], k)
            assert _close(lv["ask"], ask), (bar["open_ts"], k)
            assert lv["trades"] == n
        assert _close(math.fsum(lv["bid"] + lv["ask"] for lv in levels), bar["volume"])
        top = max(lv["bid"] + lv["ask"] for lv in levels)
        assert any(
            lv["price"] == bar["poc"] and _close(lv["bid"] + lv["ask"], top) for lv in levels
        )


def test_delta_is_the_running_sum_of_the_plain_minute_deltas(
    api: httpx.Client, capture: Capture
) -> None:
    minutes = capture.bars()
    got = api.get(f"/api/delta/{SYMBOL}", params={"count": 5000}).json()
    running, expect, session, cvd = 0.0, [], 0.0, []
    for start in sorted(minutes):
        running += _signed(minutes[start])
        expect.append(running)
        if start > min(minutes) and _session(start) != _session(start - MIN):
            session = 0.0
        session += _signed(minutes[start])
        cvd.append(session)
    assert [d["time"] for d in got] == [s // NS for s in sorted(minutes)]
    assert [d["bar_delta"] for d in got] == pytest.approx(
        [_signed(minutes[s]) for s in sorted(minutes)], rel=1e-9, abs=1e-9
    )
    assert [d["value"] for d in got] == pytest.approx(expect, rel=1e-9, abs=1e-9)
    # the session CVD restarts with the UTC day: the capture crosses midnight in its last minute
    assert len({_session(s) for s in minutes}) == 2
    assert [d["cvd"] for d in got] == pytest.approx(cvd, rel=1e-9, abs=1e-9)


def test_tape_is_the_last_trades_of_the_capture(api: httpx.Client, capture: Capture) -> None:
    got = api.get(f"/api/tape/{SYMBOL}", params={"count": 200}).json()
    last = list(reversed(capture.prints[-200:]))
    assert [(t["trade_id"], t["price"], t["size"], t["side"], t["ts_event"]) for t in got] == [
        (t.trade_id, t.price, t.size, "buy" if t.buy else "sell", t.ts) for t in last
    ]


def test_orderbook_is_the_book_rebuilt_from_the_capture(
    api: httpx.Client, capture: Capture
) -> None:
    got = api.get(f"/api/orderbook/{SYMBOL}", params={"levels": 25}).json()
    assert got["valid"]
    bids = sorted(capture.bids.items(), reverse=True)[:25]
    asks = sorted(capture.asks.items())[:25]
    assert [(x["price"], x["quantity"]) for x in got["bids"]] == bids
    assert [(x["price"], x["quantity"]) for x in got["asks"]] == asks
    assert (got["best_bid"], got["best_ask"]) == (bids[0][0], asks[0][0])
    assert got["best_bid"] < got["best_ask"]


def _profile_poc(trades: list[Print]) -> tuple[float, float]:
    """(POC, volume) of the plain profile of ``trades``: rows of ``PROFILE_TICKS`` whole ticks."""
    rows: dict[int, float] = defaultdict(float)
    for t in trades:
        rows[t.ticks() // PROFILE_TICKS] += t.size
    top = max(rows.values())
    tied = [k for k, v in rows.items() if math.isclose(v, top, rel_tol=1e-12)]
    assert len(tied) == 1, "a tie would need the midpoint rule; the capture has none"
    return float(tied[0] * PROFILE_TICKS * TICK), math.fsum(rows.values())


def test_volume_profile_poc_is_the_plain_profiles(api: httpx.Client, capture: Capture) -> None:
    first = _session(capture.prints[0].ts)
    # the 2024-08-08 session closed with the first trade after midnight: every trade of it
    poc, volume = _profile_poc([t for t in capture.prints if _session(t.ts) == first])
    got = api.get(f"/api/volume-profile/{SYMBOL}").json()
    assert len(got) == 2  # the developing 2024-08-09 session first, then the closed one
    developing, closed = got
    assert closed["final"]
    assert not developing["final"]
    assert closed["poc"] == poc
    assert _close(closed["volume"], volume)
    assert _close(math.fsum(x["volume"] for x in closed["rows"]), volume)
    assert closed["val"] <= poc <= closed["vah"]
    assert developing["val"] <= developing["poc"] <= developing["vah"]
    # the range profile sums the footprints of the bars served: their trades' plain profile
    served = [t for g in capture.bars().values() for t in g]
    (ranged,) = api.get(f"/api/volume-profile/{SYMBOL}", params={"range": 3600}).json()
    assert (ranged["poc"], ranged["volume"]) == pytest.approx(_profile_poc(served), rel=1e-9)


def test_microstructure_and_stats_are_sane(api: httpx.Client, capture: Capture) -> None:
    minutes = capture.bars()
    newest = max(minutes)
    micro = api.get(f"/api/microstructure/{SYMBOL}").json()
    assert micro["symbol"] == SYMBOL
    book = micro["book"]
    assert book["valid"]
    assert book["best_bid"] < book["best_ask"]
    assert min(t.price for t in capture.prints) <= book["best_bid"]
    assert book["best_ask"] <= max(t.price for t in capture.prints)
    delta = micro["delta"]
    assert delta["bar_open_ts"] == newest
    assert _close(delta["bar_delta"], _signed(minutes[newest]))
    session = [t for s, g in minutes.items() if _session(s) == _session(newest) for t in g]
    assert _close(delta["session_cvd"], _signed(session))
    assert _close(delta["cvd_total"], _signed([t for g in minutes.values() for t in g]))
    # two warm-up bars and fixed thresholds: the detectors spoke, inside the capture, newest first
    pats = micro["patterns"]
    assert pats
    first, last = capture.prints[0].ts, capture.prints[-1].ts
    assert all(first <= x["ts_event"] <= last for x in pats)
    assert [x["ts_event"] for x in pats] == sorted((x["ts_event"] for x in pats), reverse=True)
    stats = api.get("/api/stats").json()
    assert stats["data_source"] == "pipeline"
    assert stats["undecodable_entries"] == 0
    (inst,) = stats["instruments"]
    assert inst["symbol"] == SYMBOL
    assert inst["book_valid"] is True


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/candles/BTCUSD", 404),
        ("/api/tape/XAUUSDT", 404),
        ("/api/candles/BTCUSDT?tf=7m", 422),
        ("/api/orderbook/BTCUSDT?levels=26", 422),
        ("/api/footprint/BTCUSDT?count=0", 422),
    ],
)
def test_bad_requests_are_404_or_422_with_a_reason(
    api: httpx.Client, path: str, status: int
) -> None:
    resp = api.get(path)
    assert resp.status_code == status
    body = resp.json()
    assert body["status"] == status
    assert body["error"]
