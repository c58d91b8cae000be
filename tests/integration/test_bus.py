"""The bus against a real Redis: round trips, dead letters, duplicates, retention."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from tests.support.samples import SAMPLES

from ofcommon import codec, entry_ids, keys, retention
from ofcommon.bus import DeadLetters, GroupReader, Producer
from ofcommon.messages import Side, Trade

pytestmark = pytest.mark.redis


async def test_every_message_type_round_trips(redis: aioredis.Redis) -> None:
    stream = keys.stream("BTCUSDT", "trades")
    producer = Producer(redis, service="test")
    for msg in SAMPLES:
        producer.add(stream, msg)
    result = await producer.flush()
    assert result.added == len(SAMPLES)
    reader = GroupReader(redis, [stream], "g", "c1", service="test", count=100, block_ms=10)
    await reader.start()
    entries = await reader.read()
    assert [e.msg for e in entries] == list(SAMPLES)
    await reader.ack(entries)
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_undecodable_entries_are_dead_lettered_and_reading_goes_on(
    redis: aioredis.Redis,
) -> None:
    stream = keys.stream("ETHUSDT", "trades")
    good1 = Trade(1, 1, 10.0, 1.0, Side.BUY, "a")
    good2 = Trade(2, 2, 11.0, 2.0, Side.SELL, "b")
    producer = Producer(redis, service="test")
    await producer.publish(stream, good1)
    bad_id = (await redis.xadd(stream, {codec.FIELD: b"\xc1garbage"})).decode()
    no_field_id = (await redis.xadd(stream, {b"x": b"1"})).decode()
    await producer.publish(stream, good2)

    reader = GroupReader(redis, [stream], "g", "c1", service="test", block_ms=10)
    await reader.start()
    entries = await reader.read()
    assert [e.msg for e in entries] == [good1, good2]
    await reader.ack(entries)

    dead = await redis.xrange(keys.dead_letters("ETHUSDT"))
    assert [f[b"origin_id"].decode() for _, f in dead] == [bad_id, no_field_id]
    assert dead[0][1][b"reason"].startswith(b"undecodable")
    assert dead[0][1][b"origin"].decode() == stream
    assert dead[0][1][codec.FIELD] == b"\xc1garbage"
    assert dead[1][1][b"reason"].startswith(b"malformed")
    # nothing is left pending: the dead letters were acknowledged too
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_explicit_ids_make_repeated_writes_duplicates(redis: aioredis.Redis) -> None:
    stream = keys.stream("BTCUSDT", "bars")
    producer = Producer(redis, service="test")
    msgs = [Trade(i, i, 1.0, 1.0, Side.BUY, str(i)) for i in range(5)]
    ids = [str(entry_ids.EntryId(1000, i)) for i in range(5)]
    for m, i in zip(msgs, ids, strict=True):
        producer.add(stream, m, i)
    assert await producer.flush() == (5, 0, 0)
    for m, i in zip(msgs, ids, strict=True):  # a replay after a crash writes the same again
        producer.add(stream, m, i)
    producer.add(stream, msgs[0], str(entry_ids.EntryId(1000, 5)))
    assert await producer.flush() == (1, 5, 0)
    assert await redis.xlen(stream) == 6


async def test_maxlen_bounds_every_stream(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = keys.stream("BTCUSDT", "trades")
    monkeypatch.setitem(
        retention.DEFAULTS,
        "trades",
        retention.StreamRetention(maxlen=100, max_age_s=3600),
    )
    producer = Producer(redis, service="test")
    for i in range(2000):
        producer.add(stream, Trade(i, i, 1.0, 1.0, Side.BUY, str(i)))
    await producer.flush()
    length = await redis.xlen(stream)
    assert 100 <= length < 400  # approximate trimming works on whole macro nodes


async def test_trim_by_age_drops_old_entries(redis: aioredis.Redis) -> None:
    stream = keys.stream("BTCUSDT", "trades")
    sec, _ = await redis.time()
    old_ms = (int(sec) - 3 * 24 * 3600) * 1000
    producer = Producer(redis, service="test")
    for i in range(300):
        producer.add(stream, Trade(i, i, 1.0, 1.0, Side.BUY, str(i)), f"{old_ms + i}-0")
    for i in range(10):
        producer.add(stream, Trade(i, i, 1.0, 1.0, Side.BUY, f"new{i}"))
    await producer.flush()
    await producer.trim_by_age()
    remaining = await redis.xrange(stream)
    # MINID ~ may keep a partial macro node of old entries, but never drops a new one
    assert sum(1 for i, _ in remaining if entry_ids.parse(i).ms >= old_ms + 300) == 10
    assert len(remaining) < 310


async def test_trimmed_pending_entry_is_dead_lettered(redis: aioredis.Redis) -> None:
    stream = keys.stream("XAUUSDT", "trades")
    producer = Producer(redis, service="test")
    await producer.publish(stream, Trade(1, 1, 1.0, 1.0, Side.BUY, "1"))
    reader = GroupReader(redis, [stream], "g", "c1", service="test", block_ms=10)
    await reader.start()
    [entry] = await reader.read()
    await redis.xdel(stream, entry.id)  # trimmed before it was acknowledged
    again = GroupReader(redis, [stream], "g", "c1", service="test", block_ms=10)
    assert await again.read() == []
    dead = await redis.xrange(keys.dead_letters("XAUUSDT"))
    assert dead[0][1][b"reason"].startswith(b"trimmed")
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_rerun_does_not_repeat_a_dead_letter(redis: aioredis.Redis) -> None:
    """A consumer killed between dead-lettering an entry and acking it reads the entry again on
    restart; the dead letter it writes then must not be a second copy."""
    stream = keys.stream("SOLUSDT", "trades")
    dlq = keys.dead_letters("SOLUSDT")
    bad_id = (await redis.xadd(stream, {codec.FIELD: b"\xc1garbage"})).decode()
    for _ in range(2):  # the first run, killed before its ack, then the re-run
        reader = GroupReader(redis, [stream], "g", "c1", service="test", block_ms=10)
        await reader.start()
        await redis.xgroup_setid(stream, "g", "0")  # as if nothing had been acknowledged
        assert await reader.read() == []
    dead = await redis.xrange(dlq)
    assert [(i.decode(), f[b"origin_id"].decode()) for i, f in dead] == [(bad_id, bad_id)]


async def test_dead_letters_below_the_top_still_go_in_once_each(redis: aioredis.Redis) -> None:
    origin = keys.stream("SOLUSDT", "trades")
    dlq = keys.dead_letters("SOLUSDT")
    await redis.xadd(dlq, {b"reason": b"newer"}, id="9000-0")  # another stage's, far newer
    analytics, patterns = DeadLetters(redis, "analytics"), DeadLetters(redis, "patterns")
    assert await analytics.send(origin, "1000-0", "undecodable: x", b"\xc1")
    assert await patterns.send(origin, "1000-0", "undecodable: x", b"\xc1")  # another stage
    assert await analytics.send(origin, "1000-1", "undecodable: y", b"\xc2")
    for _ in range(2):  # re-runs: every one of them already there
        assert not await analytics.send(origin, "1000-0", "undecodable: x", b"\xc1")
        assert not await patterns.send(origin, "1000-0", "undecodable: x", b"\xc1")
        assert not await analytics.send(origin, "1000-1", "undecodable: y", b"\xc2")
    dead = [(f.get(b"stage"), f.get(b"origin_id")) for _, f in await redis.xrange(dlq)]
    assert dead == [
        (None, None),
        (b"analytics", b"1000-0"),
        (b"patterns", b"1000-0"),
        (b"analytics", b"1000-1"),
    ]
