"""Latency of the running analytics service at a live-like pace: event time is the wall clock.
Trades and book deltas are XADDed together at fixed rates; bar and book-stats entries map back.

Unlike a replay of a recorded file (which compresses event time, so the outputs throttled by
event time are far denser per trade), every trade and delta here carries ``time.time_ns()`` as its
event time, so partial bars (one per 250 ms), developing profiles (one per second) and book stats
(one per 250 ms) come at the cadence a live feed gives them. The prices, sizes and sides are the
recorded trades'; the book is a 50-level image around the first trade's price whose deltas resize
two levels each (never emptying one, so the book stays valid and uncrossed).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis

from ofcommon import entry_ids, keys
from ofcommon.bus import Producer
from ofcommon.messages import BookDelta, BookSnapshot, Side, Trade

PACE_SLEEP_S: Final = 0.0005
LEVELS: Final = 50
TOUCH_LEVELS: Final = 20  # deltas resize levels this close to the touch
SEED: Final = 8

TradeRow = tuple[float, float, Side]  # price, size, side


@dataclass
class Timed:
    """Latencies (ns) from an input entry's XADD to the first output entry it caused."""

    sent: int = 0
    outputs: int = 0
    unmatched: int = 0
    ns: list[int] = field(default_factory=list)

    def quantile_ms(self, q: float) -> float:
        if not self.ns:
            return float("nan")
        ordered = sorted(self.ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


@dataclass
class LiveRun:
    trade_rate: float
    book_rate: float
    seconds: float
    send_seconds: float = 0.0
    bars: Timed = field(default_factory=Timed)
    bookstats: Timed = field(default_factory=Timed)

    def reached(self, timed: Timed) -> float:
        return timed.sent / self.send_seconds if self.send_seconds else 0.0


class _Ids:
    """Explicit, increasing entry IDs of one stream from the wall clock (as Redis makes them)."""

    def __init__(self, top: entry_ids.EntryId) -> None:
        self.ms, self.seq = top.ms, top.seq

    def next(self, now_ms: int) -> entry_ids.EntryId:
        if now_ms > self.ms:
            self.ms, self.seq = now_ms, 0
        else:
            self.seq += 1
        return entry_ids.EntryId(self.ms, self.seq)


async def _top(r: aioredis.Redis, stream: str) -> entry_ids.EntryId:
    try:
        info: Any = await r.xinfo_stream(stream)
    except aioredis.ResponseError:  # no stream yet
        return entry_ids.ZERO
    return entry_ids.parse(info["last-generated-id"])


class _Book:
    """A valid book around ``mid``: the snapshot, then deltas that resize two levels each."""

    def __init__(self, mid: float, tick: float) -> None:
        self._rng = random.Random(SEED)
        self._tick = tick
        self._bid0 = round(mid - tick, 2)
        self._ask0 = round(mid + tick, 2)
        self.seq = 1

    def _price(self, side: int, k: int) -> float:
        base = self._ask0 if side else self._bid0
        return round(base + (k if side else -k) * self._tick, 2)

    def snapshot(self, ts: int) -> BookSnapshot:
        bids = [(self._price(0, k), 1.0 + k) for k in range(LEVELS)]
        asks = [(self._price(1, k), 1.0 + k) for k in range(LEVELS)]
        return BookSnapshot(ts, ts, self.seq, bids, asks, depth=LEVELS)

    def delta(self, ts: int) -> BookDelta:
        self.seq += 1
        rng = self._rng
        bid = (self._price(0, rng.randrange(TOUCH_LEVELS)), round(rng.uniform(0.1, 5.0), 3))
        ask = (self._price(1, rng.randrange(TOUCH_LEVELS)), round(rng.uniform(0.1, 5.0), 3))
        return BookDelta(ts, ts, self.seq, [bid], [ask])


async def _pace(
    r: aioredis.Redis,
    symbol: str,
    rows: list[TradeRow],
    tick: float,
    run: LiveRun,
) -> tuple[dict[entry_ids.EntryId, int], dict[entry_ids.EntryId, int]]:
    """XADD trades and book deltas at the run's rates: {entry ID: ns sent} per stream."""
    trades_key, book_key = keys.stream(symbol, "trades"), keys.stream(symbol, "book")
    trade_ids, book_ids = _Ids(await _top(r, trades_key)), _Ids(await _top(r, book_key))
    producer = Producer(r, service="bench", trim_by_age=False)
    book = _Book(rows[0][0], tick)
    sent_trades: dict[entry_ids.EntryId, int] = {}
    sent_book: dict[entry_ids.EntryId, int] = {}
    n_trades = int(run.trade_rate * run.seconds)
    n_deltas = int(run.book_rate * run.seconds)
    now = time.time_ns()
    snap_id = book_ids.next(now // 1_000_000)
    producer.add(book_key, book.snapshot(now), str(snap_id))
    await producer.flush()
    done_t = done_b = 0
    t0 = time.perf_counter()
    while done_t < n_trades or done_b < n_deltas:
        elapsed = time.perf_counter() - t0
        due_t = min(n_trades, int(elapsed * run.trade_rate) + 1)
        due_b = min(n_deltas, int(elapsed * run.book_rate) + 1)
        if due_t > done_t or due_b > done_b:
            now = time.time_ns()
            now_ms = now // 1_000_000
            new_t, new_b = [], []
            for n in range(done_t, due_t):
                price, size, side = rows[n % len(rows)]
                eid = trade_ids.next(now_ms)
                producer.add(trades_key, Trade(now, now, price, size, side, f"live{n}"), str(eid))
                new_t.append(eid)
            for _ in range(done_b, due_b):
                eid = book_ids.next(now_ms)
                producer.add(book_key, book.delta(now), str(eid))
                new_b.append(eid)
            t_ns = time.perf_counter_ns()
            await producer.flush()
            sent_trades.update(dict.fromkeys(new_t, t_ns))
            sent_book.update(dict.fromkeys(new_b, t_ns))
            done_t, done_b = due_t, due_b
        await asyncio.sleep(PACE_SLEEP_S)
    run.send_seconds = time.perf_counter() - t0
    return sent_trades, sent_book


async def _read(
    r: aioredis.Redis, streams: list[str], stop: asyncio.Event, seen: list[tuple[str, bytes, int]]
) -> None:
    last: dict[str, Any] = {s: str(await _top(r, s)) for s in streams}
    while not stop.is_set():
        try:
            reply: Any = await r.xread(last, count=10_000, block=100)
        except aioredis.TimeoutError:  # a loaded machine: the block outlived the socket timeout
            continue
        t_ns = time.perf_counter_ns()
        for name, entries in reply or ():
            stream = name.decode() if isinstance(name, bytes) else name
            for eid, _ in entries:
                seen.append((stream, eid, t_ns))
            last[stream] = entries[-1][0]


def _match(
    timed: Timed,
    seen: list[tuple[bytes, int]],
    sent: dict[entry_ids.EntryId, int],
    caused_by: Callable[[bytes], entry_ids.EntryId],
) -> None:
    timed.sent, timed.outputs = len(sent), len(seen)
    first: dict[entry_ids.EntryId, int] = {}
    for eid, t_ns in seen:
        cause = caused_by(eid)
        if cause not in sent:
            timed.unmatched += 1
        elif cause not in first:
            first[cause] = t_ns - sent[cause]
    timed.ns = list(first.values())


async def live_latency(
    url: str,
    symbol: str,
    rows: list[TradeRow],
    tick: float,
    run: LiveRun,
    *,
    caught_up: Callable[[aioredis.Redis, dict[str, entry_ids.EntryId]], Any],
    caused_by: Callable[[bytes], entry_ids.EntryId],
) -> LiveRun:
    """Pace the run against the service on ``url``; ``caught_up(redis, {stream: last id})`` is
    awaited until the service has folded everything sent."""
    # The reader has a client of its own so its blocking XREAD never waits behind the writer.
    writer = aioredis.Redis.from_url(url, decode_responses=False)
    reader = aioredis.Redis.from_url(url, decode_responses=False)
    bars_key, stats_key = keys.stream(symbol, "bars"), keys.stream(symbol, "bookstats")
    try:
        stop = asyncio.Event()
        seen: list[tuple[str, bytes, int]] = []
        task = asyncio.create_task(_read(reader, [bars_key, stats_key], stop, seen))
        await asyncio.sleep(0.2)
        sent_t, sent_b = await _pace(writer, symbol, rows, tick, run)
        await caught_up(
            writer,
            {keys.stream(symbol, "trades"): max(sent_t), keys.stream(symbol, "book"): max(sent_b)},
        )
        await asyncio.sleep(0.3)
        stop.set()
        await task
    finally:
        await writer.aclose()
        await reader.aclose()
    _match(run.bars, [(e, t) for s, e, t in seen if s == bars_key], sent_t, caused_by)
    _match(run.bookstats, [(e, t) for s, e, t in seen if s == stats_key], sent_b, caused_by)
    return run
