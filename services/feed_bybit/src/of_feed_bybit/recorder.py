"""``ofx record bybit <category>``: capture raw frames of one category without publishing anything.
The live feed's own connection code runs it; the parser only drives acks, pongs and book resyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from of_feed_bybit.client import BybitClient
from of_feed_bybit.parser import BybitParser
from ofcommon.clock import Clock, LiveClock
from ofcommon.instruments import Registry
from ofcommon.settings import load_settings
from ofcommon.venue import RecordOptions

log = logging.getLogger(__name__)


def _category(name: str) -> Literal["linear", "spot"]:
    if name == "linear":
        return "linear"
    if name == "spot":
        return "spot"
    raise ValueError(f"Bybit category must be 'linear' or 'spot', got {name!r}")


async def record(
    options: RecordOptions, stop: asyncio.Event, *, clock: Clock | None = None
) -> Sequence[Path]:
    """Record until ``stop`` is set or ``duration_s`` passed; the recording files, in order.

    Connection settings (URL, depth, ping, watchdogs, rotation) are the feed's ``OF_*``
    variables; the instruments are those of ``OF_INSTRUMENTS`` on this Bybit category.
    """
    from of_feed_bybit.service import BybitSettings  # the service module imports this one

    settings = load_settings(BybitSettings)
    category = _category(options.category)
    instruments = [
        i
        for i in options.registry.select(settings.instruments)
        if i.bybit is not None and i.bybit.category == category
    ]
    if not instruments:
        raise ValueError(f"no selected instrument (OF_INSTRUMENTS) is on Bybit {category}")
    parser = BybitParser(category, Registry(instruments), depth=settings.bybit_depth)
    writer = settings.recorder(options.out_dir, category)
    client = BybitClient(
        url=settings.bybit_ws_url,
        category=category,
        parser=parser,
        instruments=instruments,
        clock=clock or LiveClock(),
        options=settings.client_options(),
        recorder=writer,
    )
    done = asyncio.Event()
    task = asyncio.create_task(client.run(done), name=f"bybit-record-{category}")
    try:
        loop = asyncio.get_running_loop()
        end = None if options.duration_s is None else loop.time() + options.duration_s
        waiter = asyncio.ensure_future(stop.wait())
        try:
            while not waiter.done() and not task.done():
                left = 1.0 if end is None else min(1.0, end - loop.time())
                if left <= 0:
                    break
                await asyncio.wait({waiter, task}, timeout=left)
                writer.flush()  # a killed recorder loses at most a second
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    finally:
        done.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()
    log.info("bybit %s: recorded %d frames", category, client.counters["frames"])
    return list(writer.paths)
