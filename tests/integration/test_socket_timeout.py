"""An idle blocking read longer than redis-py's default socket timeout returns empty, not an
error: the service client's socket timeout is derived from ``OF_BLOCK_MS``."""

from __future__ import annotations

import pytest

from ofcommon.runner import connect
from ofcommon.settings import OwnedStageSettings, load_settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_an_idle_read_blocking_past_five_seconds_does_not_time_out(clean_redis: str) -> None:
    block_ms = 5_300  # above redis-py's 5 s default socket timeout
    settings = load_settings(
        OwnedStageSettings, {"OF_REDIS_URL": clean_redis, "OF_BLOCK_MS": str(block_ms)}
    )
    client = connect(settings)
    try:
        await client.xadd("of:TEST:trades", {b"d": b"x"})
        reply = await client.xread({"of:TEST:trades": "$"}, block=block_ms)
    finally:
        await client.aclose()
    assert not reply  # nothing new arrived: an empty reply, and no TimeoutError
