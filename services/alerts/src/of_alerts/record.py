"""The record of sent alerts in Redis, checked before each send: what makes alerts exactly-once.

One hash per alert (``keys.alert_record``), one field per chat and message part. A send is
claimed first (``sending:<worker>:<ms>``, set only if the field is empty), then settled
(``sent:<message id>``, ``failed:<reason>``, ``uncertain``). A claim found after a crash means
the request may have reached Telegram: the caller decides (by default, never resend it).
"""

from __future__ import annotations

import time
from typing import Final

from ofcommon import keys, retention
from ofcommon.bus import Redis

SENDING: Final = "sending:"
# Longer than any redelivery: an entry can only come back while its stream still holds it.
TTL_S: Final = (
    max(retention.for_kind("tradeevents").max_age_s, retention.for_kind("bias").max_age_s)
    + retention.DAY
)

_CLAIM: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return false
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def slot(chat: str, part: int) -> str:
    return f"{chat}:{part}"


class SentRecord:
    def __init__(self, redis: Redis, worker: str, *, ttl_s: int = TTL_S) -> None:
        self._redis = redis
        self._worker = worker
        self._ttl_s = ttl_s
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def token(self) -> str:
        return f"{SENDING}{self._worker}:{time.time_ns() // 1_000_000}"

    async def claim(self, symbol: str, key: str, field: str, token: str) -> str | None:
        """Set ``token`` unless the field holds something; None when claimed, else what it holds."""
        found = await self._claim(
            keys=[keys.alert_record(symbol, key)], args=[field, token, self._ttl_s]
        )
        if found is None:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)

    async def release(self, symbol: str, key: str, field: str, token: str) -> None:
        """Drop our claim (the request surely did not go through: 429, connection refused)."""
        await self._release(keys=[keys.alert_record(symbol, key)], args=[field, token])

    async def settle(self, symbol: str, key: str, field: str, outcome: str) -> None:
        name = keys.alert_record(symbol, key)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(name, field, outcome)
        pipe.expire(name, self._ttl_s)
        await pipe.execute()

    async def get(self, symbol: str, key: str, field: str) -> str | None:
        value = await self._redis.hget(keys.alert_record(symbol, key), field)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
