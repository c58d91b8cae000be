"""Fault: 10,000 undecodable entries and one poison entry in the middle of the real trades.

Every bad entry must be dead-lettered once with its origin ID and a reason, the worker must not
crash-loop, and the real entries around them must be folded exactly as an uninterrupted run over
the good entries alone (the poison leaves no half-applied state behind).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
import redis as sync_redis
from tests.support.faults import analytics
from tests.support.faults.analytics import Workers
from tests.support.faults.recording import SYMBOL, real_recording
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import wait_for

from ofcommon import codec, keys
from ofcommon.db import migrate
from ofcommon.messages import Trade

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

UNDECODABLE = 10_000


def _bad_entries(r: sync_redis.Redis, poison: Trade) -> tuple[list[str], str]:
    """Write the undecodable entries (three kinds of garbage) with the poison in their middle."""
    stream = keys.stream(SYMBOL, "trades")
    pipe = r.pipeline(transaction=False)
    for i in range(UNDECODABLE):
        if i == UNDECODABLE // 2:
            pipe.xadd(stream, {codec.FIELD: codec.encode(poison)})
        if i % 3 == 0:
            pipe.xadd(stream, {codec.FIELD: b"\xc1 not msgpack %d" % i})
        elif i % 3 == 1:
            pipe.xadd(stream, {b"x": b"no d field"})
        else:
            pipe.xadd(stream, {codec.FIELD: msgspec.msgpack.encode({"t": "nosuchtype", "i": i})})
    ids = [i.decode() for i in pipe.execute()]
    poison_id = ids.pop(UNDECODABLE // 2)
    return ids, poison_id


def test_undecodable_flood_and_poison_are_dead_lettered(
    case: Case, own_redis: OwnRedis, database_url: str, tmp_path: Path
) -> None:
    case.fault = "10 k undecodable entries + 1 poison"
    case.checked = "all dead-lettered once with reason, no crash loop, real data folded exactly"
    migrate(database_url)
    r = own_redis.client()
    workers = Workers(analytics.env(own_redis.url, database_url, [SYMBOL]), tmp_path)
    items = real_recording()
    third = len(items) // 3
    # a real trade of the capture with a price no market has: the fold cannot take it
    trades = [p.msg for p in items[third:] if isinstance(p.msg, Trade)]
    poison = msgspec.structs.replace(trades[0], price=float("nan"))
    try:
        workers.spawn("analytics-0")
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 60, "the worker to own")
        start = time.monotonic()
        asyncio.run(analytics.publish(own_redis.url, items[:third]))
        first = analytics.reference(r, SYMBOL)
        analytics.wait_caught_up(r, SYMBOL, first, 60, "the first third folded")
        before_s = time.monotonic() - start

        bad, poison_id = _bad_entries(r, poison)
        start = time.monotonic()
        wait_for(
            lambda: r.xlen(keys.dead_letters(SYMBOL)) >= UNDECODABLE + 1,
            90,
            "every bad entry dead-lettered",
        )
        case.figures["10k dead-lettered in"] = f"{time.monotonic() - start:.1f} s"

        start = time.monotonic()
        asyncio.run(analytics.publish(own_redis.url, items[third:]))
        expected = analytics.reference(r, SYMBOL, skip=frozenset({poison_id}))
        analytics.wait_caught_up(r, SYMBOL, expected, 60, "the rest folded after the flood")
        after_s = time.monotonic() - start
        case.figures["real entries/s before, after"] = (
            f"{third / before_s:.0f}, {(len(items) - third) / after_s:.0f}"
        )
        time.sleep(0.5)
        diffs = analytics.differences(expected, analytics.actual(r, SYMBOL))
        assert not diffs, "; ".join(diffs)
        bars, profiles = analytics.expected_rows(expected)
        assert analytics.stored_rows(database_url, SYMBOL) == (bars, profiles)

        letters = r.xrange(keys.dead_letters(SYMBOL))
        origins = [f[b"origin_id"].decode() for _, f in letters]
        assert len(origins) == len(set(origins)), "an entry was dead-lettered twice"
        assert set(origins) == {*bad, poison_id}
        assert all(f[b"reason"] and f[b"origin"] == b"of:{BTCUSDT}:trades" for _, f in letters)
        assert workers.restarts("analytics-0") == 0, "the worker crash-looped"
        workers.assert_alive("analytics-0")
    finally:
        workers.close()
        r.close()


def test_a_trade_postgresql_refuses_is_dead_lettered_not_retried_forever(
    case: Case, own_redis: OwnRedis, database_url: str, tmp_path: Path
) -> None:
    """A trade of infinite size would fold into a bar that cannot be stored (JSON has no
    infinity): a permanent error, to be dead-lettered with its reason while the stage goes on.
    The poison alone: no real trade may be blamed for the bar it spoilt."""
    case.fault = "poison PostgreSQL refuses (permanent error)"
    case.checked = "dead-lettered with the reason, no restart loop, the stage folds and stores on"
    migrate(database_url)
    r = own_redis.client()
    workers = Workers(analytics.env(own_redis.url, database_url, [SYMBOL]), tmp_path)
    items = real_recording()
    third = len(items) // 3
    trades = [p.msg for p in items[third:] if isinstance(p.msg, Trade)]
    poison = msgspec.structs.replace(trades[0], size=float("inf"), trade_id="poison-1")
    stream = keys.stream(SYMBOL, "trades")
    try:
        workers.spawn("analytics-0")
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 60, "the worker to own")
        asyncio.run(analytics.publish(own_redis.url, items[:third]))
        poison_id = r.xadd(stream, {codec.FIELD: codec.encode(poison)}).decode()
        asyncio.run(analytics.publish(own_redis.url, items[third:]))
        last = r.xrevrange(stream, count=1)[0][0]

        def read_to_the_end() -> bool:
            group = next(g for g in r.xinfo_groups(stream) if g["name"] == b"analytics")
            return bool(group["last-delivered-id"] == last and group["pending"] == 0)

        try:
            wait_for(read_to_the_end, 30, "the stage to fold and acknowledge the whole stream")
        finally:
            case.figures["restarts"] = str(workers.restarts("analytics-0"))
        letters = r.xrange(keys.dead_letters(SYMBOL))
        assert letters, "nothing was dead-lettered"
        assert [f[b"origin_id"].decode() for _, f in letters] == [poison_id], "a real trade blamed"
        assert all(f[b"reason"] for _, f in letters)
        assert workers.restarts("analytics-0") <= 1, "the worker restarted over and over"
        poison_minute = poison.ts_event // 60_000_000_000 * 60_000_000_000
        stored = analytics.stored_rows(database_url, SYMBOL)[0]
        assert any(b.open_ts > poison_minute for b in stored), "nothing stored after the poison"
        workers.assert_alive("analytics-0")
    finally:
        workers.close()
        r.close()
