"""The Bybit feed under a fault: its process against the fake Bybit, and what its streams must show.

The fake serves the real Binance BTCUSDT capture (``binance_timelines``); the checks compare the
published streams with the venue's own trades and book, read naively from the streams.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

import redis as sync_redis

from ofcommon import codec, keys
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Message, Trade
from tests.support.fake_bybit import (
    BookTimeline,
    FakeBybit,
    TradeTimeline,
    binance_timelines,
    instrument_row,
)
from tests.support.faults.analytics import REPO
from tests.support.servers import spawn_service

SYMBOL: Final = "BTCUSDT"
DEPTH: Final = 50
WORKER: Final = "bybit-faults"
REGISTRY: Final = """
[instruments.BTCUSDT]
group = "crypto"
tick_size = 0.01
row_size = 10.0
session = "FULL_DAY"
bybit = { category = "linear", symbol = "BTCUSDT" }
"""
Levels = list[tuple[float, float]]


def market() -> tuple[FakeBybit, TradeTimeline, BookTimeline]:
    """A fake Bybit serving ~800 steps of the capture (trades and the depth-50 book)."""
    trades, book = binance_timelines("linear", frames=3000, trades_per_frame=3)
    assert book is not None
    fake = FakeBybit(
        books=[book],
        trades=[trades],
        instruments={"linear": [instrument_row(SYMBOL, "0.01", "0.000001")]},
        interval_s=0.01,
    )
    return fake, trades, book


def spawn(redis_url: str, fake: FakeBybit, tmp_path: Path) -> subprocess.Popen[bytes]:
    registry = tmp_path / "instruments.toml"
    registry.write_text(REGISTRY)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    environ = {
        **base,
        "PYTHONPATH": str(REPO),
        "OF_REDIS_URL": redis_url,
        "OF_LOG_FORMAT": "json",
        "OF_WORKER_ID": WORKER,
        "OF_REGISTRY_FILE": str(registry),
        "OF_INSTRUMENTS": SYMBOL,
        "OF_HEALTH_TTL_S": "3",
        "OF_BYBIT_WS_URL": fake.ws_url,
        "OF_BYBIT_REST_URL": fake.rest_url,
        "OF_BYBIT_DEPTH": str(DEPTH),
        "OF_BYBIT_PING_INTERVAL_S": "0.5",
        "OF_BYBIT_CONN_SILENCE_S": "5",
        "OF_BYBIT_BACKOFF_INITIAL_S": "0.1",
        "OF_BYBIT_BACKOFF_MAX_S": "0.5",
        "OF_BYBIT_BACKFILL_DELAY_S": "0.05",
        "OF_BYBIT_HEARTBEAT_S": "0.5",
        "OF_BYBIT_REST_RETRIES": "1",
    }
    return spawn_service("feed_bybit", environ, tmp_path, "feed")


def messages(r: sync_redis.Redis, kind: str) -> list[Message]:
    return [codec.decode(f[codec.FIELD]) for _, f in r.xrange(keys.stream(SYMBOL, kind))]


def book_holes(msgs: list[Message]) -> list[str]:
    """Book deltas that do not follow the previous one by one sequence number, with neither a
    snapshot nor a ``Gap`` between them: a consumer would apply them to the wrong book."""
    holes = []
    last: int | None = None
    for m in msgs:
        if isinstance(m, BookSnapshot):
            last = m.seq
        elif isinstance(m, Gap):
            last = None
        elif isinstance(m, BookDelta):
            if last is not None and m.seq != last + 1:
                holes.append(f"delta seq {m.seq} after {last} without a Gap")
            last = m.seq if last is not None else None
    return holes


def final_book(msgs: list[Message]) -> tuple[Levels, Levels]:
    """The book a consumer holds after applying every snapshot and delta of the stream."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for m in msgs:
        if isinstance(m, BookSnapshot):
            bids, asks = dict(m.bids), dict(m.asks)
        elif isinstance(m, BookDelta):
            for side, levels in ((bids, m.bids), (asks, m.asks)):
                for price, size in levels:
                    if size == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def problems(r: sync_redis.Redis, trades: TradeTimeline, book: BookTimeline) -> list[str]:
    """What the streams get wrong against the venue: lost trades without a ``Gap``, repeats,
    book holes without a ``Gap``, a final book other than the venue's. Empty: all right."""
    out = []
    trade_msgs = messages(r, "trades")
    published = [m.trade_id for m in trade_msgs if isinstance(m, Trade)]
    missing = set(trades.all_ids) - set(published)
    if len(published) != len(set(published)):
        out.append(f"{len(published) - len(set(published))} trades published twice")
    if missing and not any(isinstance(m, Gap) for m in trade_msgs):
        out.append(f"{len(missing)} of {len(trades.all_ids)} trades lost without a Gap")
    book_msgs = messages(r, "book")
    out += book_holes(book_msgs)[:3]
    if final_book(book_msgs) != book.reference(DEPTH):
        out.append("the final book differs from the venue's")
    return out


def gaps(r: sync_redis.Redis) -> int:
    return sum(isinstance(m, Gap) for kind in ("trades", "book") for m in messages(r, kind))
