"""A flush whose replies are lost after Redis wrote some or all of it (a restart with AOF under
the feed, seen in the fault matrix as trades published twice) is not written twice on retry."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from ofcommon import codec, keys
from ofcommon.bus import Producer
from ofcommon.messages import Side, Trade

pytestmark = pytest.mark.redis

TRADES = keys.stream("BTCUSDT", "trades")
T0 = 1_723_161_253_900_000_000


def _trades(n: int, start: int = 0) -> list[Trade]:
    return [
        Trade(T0 + i, T0 + i + 7, 60_000.0 + i, 0.5, Side.BUY, str(i))
        for i in range(start, start + n)
    ]


class _CutPipeline:
    """Sends only the first ``applied`` commands of the batch, then fails as a dropped
    connection does: the client never learns what Redis wrote."""

    def __init__(self, real: Any, applied: int) -> None:
        self._real = real
        self._applied = applied
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self._commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        for args in self._commands[: self._applied]:
            self._real.execute_command(*args)
        await self._real.execute()
        raise RedisConnectionError("Connection closed by server.")


async def _stored(r: aioredis.Redis) -> list[str]:
    out = []
    for _, fields in await r.xrange(TRADES):
        msg = codec.decode(fields[codec.FIELD])
        assert isinstance(msg, Trade)
        out.append(msg.trade_id)
    return out


@pytest.mark.parametrize("applied", [0, 3, 10])
async def test_a_retried_flush_writes_each_entry_once(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch, applied: int
) -> None:
    r = aioredis.Redis.from_url(clean_redis)
    try:
        producer = Producer(r, service="test", trim_by_age=False)
        for t in _trades(10):
            producer.add(TRADES, t)
        real_pipeline = r.pipeline
        monkeypatch.setattr(
            r, "pipeline", lambda transaction=False: _CutPipeline(real_pipeline(False), applied)
        )
        with pytest.raises(RedisConnectionError):
            await producer.flush()
        monkeypatch.setattr(r, "pipeline", real_pipeline)
        assert len(producer) == 10  # nothing given up: the reply was lost, not the entries
        for t in _trades(2, 10):  # the feed goes on buffering behind them
            producer.add(TRADES, t)
        await producer.flush()
        assert await _stored(r) == [str(i) for i in range(12)]
        assert len(producer) == 0
    finally:
        await r.aclose()
