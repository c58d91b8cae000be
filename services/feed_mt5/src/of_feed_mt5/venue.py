"""The ``mt5`` venue plug: the frame parser for ``ofx replay`` and the recorder for ``ofx record``.

Recording runs the live polling with frames written to disk instead of published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from of_feed_mt5.feed import Mt5Feed
from of_feed_mt5.outlet import CATEGORY, VENUE as NAME, Outlet
from of_feed_mt5.parser import make_parser
from of_feed_mt5.service import Mt5Settings, client_factory, feed_config, mt5_instruments
from ofcommon.recording import RecordingWriter
from ofcommon.settings import load_settings
from ofcommon.venue import RecordOptions, Venue


async def record(opts: RecordOptions, stop: asyncio.Event) -> Sequence[Path]:
    """Poll the terminal configured by the ``OF_MT5_*`` variables and write every frame under
    ``opts.out_dir`` until ``stop`` or ``opts.duration_s``; the files written."""
    if opts.category != CATEGORY:
        raise ValueError(f"mt5 records one category, {CATEGORY!r} (got {opts.category!r})")
    settings = load_settings(Mt5Settings)
    factory, label = client_factory(settings)
    writer = RecordingWriter(opts.out_dir, NAME, opts.category)
    feed = Mt5Feed(
        factory,
        feed_config(settings),
        mt5_instruments(opts.registry, settings.instruments),
        Outlet(writer=writer),
        client_label=label,
    )
    done = asyncio.Event()
    unavailable: list[str] = []

    async def until_stop() -> None:
        loop = asyncio.get_running_loop()
        deadline = None if opts.duration_s is None else loop.time() + opts.duration_s
        # A recorder that cannot reach a terminal has nothing to wait for: end it at once.
        while not stop.is_set() and feed.status.get("connection") != "unavailable":
            if deadline is not None and loop.time() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
        if feed.status.get("connection") == "unavailable":
            unavailable.append(str(feed.status.get("error")))
        done.set()

    relay = asyncio.ensure_future(until_stop())
    try:
        await feed.run(done)
    finally:
        relay.cancel()
        writer.close()
    if unavailable:
        raise ValueError(f"MT5 unavailable: {unavailable[0]}")
    return list(writer.paths)


VENUE = Venue(name=NAME, categories=(CATEGORY,), parser=make_parser, record=record)
