"""Retrying a write in place: capped exponential backoff for as long as it fails transiently.
For stage output hooks whose store may be away (a PostgreSQL outage pauses the instrument).

Retrying in place, not restarting the worker, is the point: every restart re-delivers the
instrument's pending inputs, and the stage takes an entry delivered again and again for poison
(``ofcommon.deliveries``), so an outage would dead-letter real input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

__all__ = ["BACKOFF_MAX_S", "BACKOFF_S", "LOG_EVERY", "Sleep", "until_written"]

log = logging.getLogger(__name__)

BACKOFF_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0
# A failing write is logged at its first attempt and then every LOG_EVERY attempts.
LOG_EVERY: Final = 12

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


def _always(_: Exception) -> bool:
    return True


async def until_written(
    write: Callable[[], T],
    *,
    what: str,
    transient: Callable[[Exception], bool] = _always,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """``write()`` in a thread, again and again while it raises a ``transient`` error (backoff
    from ``BACKOFF_S`` doubling to ``BACKOFF_MAX_S``); any other error is raised at once."""
    delay = BACKOFF_S
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.to_thread(write)
        except Exception as err:
            if not transient(err):
                raise
            if attempt % LOG_EVERY == 1:
                log.warning(
                    "%s failed (attempt %d: %s); retry at most %.1fs apart",
                    what,
                    attempt,
                    err,
                    BACKOFF_MAX_S,
                )
            await sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
