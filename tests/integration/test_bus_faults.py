"""The producer against a real Redis that refuses writes: nothing unwritten is dropped silently.

Each test starts its own redis-server (the shared one must keep taking writes) and makes it
refuse every write with ``maxmemory 1`` under ``noeviction``, as a full server does (OOM).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ofcommon import codec, keys
from ofcommon.bus import Producer, WriteRefused
from ofcommon.embedded import EmbeddedServer, start_redis
from ofcommon.messages import BookDelta, Gap, Message, Side, Trade

pytestmark = pytest.mark.redis

TRADES = keys.stream("BTCUSDT", "trades")
BOOK = keys.stream("BTCUSDT", "book")
T0 = 1_723_161_253_900_000_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = start_redis(tmp_path / "redis", appendonly=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def own(server: EmbeddedServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        await client.config_set("maxmemory-policy", "noeviction")
        yield client
    finally:
        await client.aclose()


async def refuse_writes(r: aioredis.Redis) -> None:
    await r.config_set("maxmemory", "1")


async def accept_writes(r: aioredis.Redis) -> None:
    await r.config_set("maxmemory", "0")


def trades(n: int, start: int = 0) -> list[Trade]:
    return [
        Trade(
            T0 + i * 1_000_000,
            T0 + i * 1_000_000 + 7,
            60_000.0 + i,
            0.01 * (i + 1),
            Side.BUY,
            str(i),
        )
        for i in range(start, start + n)
    ]


async def stream_messages(r: aioredis.Redis, stream: str) -> list[tuple[str, Message]]:
    return [(i.decode(), codec.decode(f[codec.FIELD])) for i, f in await r.xrange(stream)]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_refused_flush_keeps_every_entry_and_the_retry_writes_them_in_order(
    own: aioredis.Redis,
) -> None:
    producer = Producer(own, service="faults-keep")
    tape = trades(20)
    deltas = [BookDelta(T0 + i, T0 + i, 100 + i, [(60_000.0, 1.0 + i)], []) for i in range(5)]
    for k, t in enumerate(tape):
        producer.add(TRADES, t)
        if k % 4 == 0:
            producer.add(BOOK, deltas[k // 4])
    await refuse_writes(own)
    with pytest.raises(WriteRefused, match="maxmemory"):
        await producer.flush()
    assert len(producer) == 25  # nothing was dropped with the error
    assert counter("of_producer_backlog_entries", service="faults-keep") == 25
    assert await own.exists(TRADES, BOOK) == 0
    with pytest.raises(WriteRefused):  # still refusing: still all kept
        await producer.flush()
    assert len(producer) == 25
    await accept_writes(own)
    result = await producer.flush()
    assert (result.added, result.duplicates, result.holes, len(producer)) == (25, 0, 0, 0)
    assert [m for _, m in await stream_messages(own, TRADES)] == tape
    assert [m for _, m in await stream_messages(own, BOOK)] == deltas
    assert counter("of_producer_backlog_entries", service="faults-keep") == 0
    assert counter("of_write_errors_total", service="faults-keep", kind="trades") == 40


async def test_explicit_ids_refused_by_an_earlier_flush_are_written_before_later_ones(
    own: aioredis.Redis,
) -> None:
    """The entry an earlier flush failed to write must not be lost once a later one succeeds."""
    producer = Producer(own, service="faults-order")
    tape = trades(10)
    ids = [f"1723161253900-{i}" for i in range(10)]
    for t, i in zip(tape[:5], ids[:5], strict=True):
        producer.add(TRADES, t, i)
    await refuse_writes(own)
    with pytest.raises(WriteRefused):
        await producer.flush()
    await accept_writes(own)
    for t, i in zip(tape[5:], ids[5:], strict=True):
        producer.add(TRADES, t, i)
    result = await producer.flush()
    assert (result.added, result.duplicates, result.holes) == (10, 0, 0)
    assert await stream_messages(own, TRADES) == list(zip(ids, tape, strict=True))


async def test_a_refusal_below_the_top_is_a_duplicate_only_when_the_same_entry_is_there(
    own: aioredis.Redis,
) -> None:
    a, b, c = trades(3)
    await own.xadd(TRADES, {codec.FIELD: codec.encode(b)}, id="2000-0")  # another writer's b
    producer = Producer(own, service="faults-hole")
    producer.add(TRADES, a, "1000-0")  # below the top, and nothing there: a hole
    producer.add(TRADES, b, "2000-0")  # the very same entry: a duplicate
    result = await producer.flush()
    assert (result.added, result.duplicates, result.holes) == (0, 1, 1)
    producer.add(TRADES, c, "2000-0")  # the same ID with other data: a hole too
    assert await producer.flush() == (0, 0, 1)
    got = await stream_messages(own, TRADES)
    assert [i for i, _ in got] == ["2000-0", "2000-1", "2000-2"]
    assert got[0][1] == b
    gaps = [m for _, m in got[1:]]
    assert all(isinstance(g, Gap) and g.stream == "trades" for g in gaps)
    assert isinstance(gaps[0], Gap)
    assert "1000-0" in gaps[0].reason
    assert (gaps[0].ts_event, gaps[0].ts_recv) == (a.ts_event, a.ts_recv)
    assert producer.holes == 2
    assert counter("of_refused_outputs_total", service="faults-hole", kind="trades") == 2
    assert counter("of_duplicate_outputs_total", service="faults-hole", kind="trades") == 1


async def test_a_full_buffer_drops_the_oldest_and_a_gap_says_exactly_what(
    own: aioredis.Redis,
) -> None:
    producer = Producer(own, service="faults-full", max_buffer=10)
    tape = trades(25)
    await refuse_writes(own)
    for t in tape:
        producer.add(TRADES, t)
        with pytest.raises(WriteRefused):
            await producer.flush()
    kept = len(producer)
    assert kept <= 10
    lost = len(tape) - kept
    await accept_writes(own)
    result = await producer.flush()
    got = [m for _, m in await stream_messages(own, TRADES)]
    assert result.added == kept + 1
    gap, *rest = got
    assert rest == tape[lost:]  # the newest survive, in order
    assert isinstance(gap, Gap)
    assert gap.stream == "trades"
    assert f"{lost} entries dropped" in gap.reason
    dropped = tape[:lost]
    assert (gap.ts_event, gap.ts_recv) == (dropped[0].ts_event, dropped[-1].ts_recv)
    assert f"event time {dropped[0].ts_event}..{dropped[-1].ts_event} ns" in gap.reason
    assert producer.dropped == lost
    assert counter("of_producer_dropped_total", service="faults-full", kind="trades") == lost
    assert await producer.flush() == (0, 0, 0)  # the loss was reported once


async def test_a_full_buffer_of_explicit_ids_puts_the_gap_where_the_lost_entries_were(
    own: aioredis.Redis,
) -> None:
    producer = Producer(own, service="faults-full-ids", max_buffer=4)
    tape = trades(9)
    ids = [f"5000-{i}" for i in range(9)]
    await refuse_writes(own)
    for t, i in zip(tape, ids, strict=True):
        producer.add(TRADES, t, i)
    lost = len(tape) - len(producer)
    await accept_writes(own)
    await producer.flush()
    got = await stream_messages(own, TRADES)
    assert [i for i, _ in got] == [ids[lost - 1], *ids[lost:]]
    assert isinstance(got[0][1], Gap)
    assert [m for _, m in got[1:]] == tape[lost:]
