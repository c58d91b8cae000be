"""Delivery counts of pending entries: when an entry that is never acknowledged is poison.

Delivered over N times without an ack, it killed its consumer each time: dead-letter it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis

from ofcommon import entry_ids

MAX_DELIVERIES: Final = 5  # deliveries without ack before an entry counts as poison


def poison_reason(deliveries: int) -> str:
    return f"poison: delivered {deliveries} times without ack"


async def over_delivered(
    redis: aioredis.Redis,
    group: str,
    consumer: str,
    entries: Sequence[tuple[str, str]],
    max_deliveries: int,
) -> dict[tuple[str, str], int]:
    """The (stream, id) of ``entries`` (pending for ``consumer``) that the group delivered more
    than ``max_deliveries`` times, with their delivery counts: XPENDING ranges per stream."""
    by_stream: dict[str, list[str]] = {}
    for stream, entry_id in entries:
        by_stream.setdefault(stream, []).append(entry_id)
    out: dict[tuple[str, str], int] = {}
    for stream, ids in by_stream.items():
        wanted = set(ids)
        lo, hi = min(ids, key=entry_ids.parse), str(max(entry_ids.parse(i) for i in ids))
        page = max(len(ids), 100)
        while True:
            info: list[dict[str, Any]] = await redis.xpending_range(
                stream, group, min=lo, max=hi, count=page, consumername=consumer
            )
            for item in info:
                entry_id = _s(item["message_id"])
                times = int(item["times_delivered"])
                if entry_id in wanted and times > max_deliveries:
                    out[(stream, entry_id)] = times
            if len(info) < page:
                break
            lo = f"({_s(info[-1]['message_id'])}"
    return out


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
