"""How far a consumer group has got on a stream: the acknowledged and the delivered positions.
Used by the rebuild hooks (``ofcommon.stage.Rebuild``) of stages that lost their checkpoint.
"""

from __future__ import annotations

from typing import Any

from ofcommon.bus import Redis

__all__ = ["consumed", "delivered"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def consumed(redis: Redis, stream: str, group: str) -> tuple[str | None, bool]:
    """The last entry ID whose processing the group has acknowledged (None: nothing yet), and
    whether entries after it are pending (delivered, maybe stored, not acknowledged)."""
    info = next((g for g in await redis.xinfo_groups(stream) if _text(g["name"]) == group), None)
    if info is None:
        return None, False
    if int(info["pending"]):
        oldest = _text((await redis.xpending(stream, group))["min"])
        before = await redis.xrevrange(stream, max=f"({oldest}", min="-", count=1)
        return (_text(before[0][0]) if before else None), True
    last = _text(info["last-delivered-id"])
    return (None if last == "0-0" else last), False


async def delivered(redis: Redis, stream: str, group: str) -> str | None:
    """The group's last-delivered entry ID (None: nothing delivered yet)."""
    for g in await redis.xinfo_groups(stream):
        if _text(g["name"]) == group:
            last = _text(g["last-delivered-id"])
            return None if last == "0-0" else last
    return None
