"""The ``sim`` service: runs the simulator and publishes its messages like a feed, paced by event
time (or as fast as Redis takes them), writing the labels file beside the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from ofcommon import codec, keys
from ofcommon.bus import Producer, WriteRefused
from ofcommon.service import Service, ServiceContext
from ofcommon.simulator.generator import SimConfig, events
from ofcommon.simulator.labels import Label, LabelWriter
from ofcommon.simulator.resume import Resume
from ofcommon.simulator.settings import SimSettings

__all__ = ["SERVICE", "SimSettings", "main"]

log = logging.getLogger(__name__)

_BATCH: Final = 1000  # entries per pipelined flush
_MIN_SLEEP_S: Final = 0.002  # pacing waits shorter than this are not worth a flush
_YIELD_EVERY: Final = 5000  # items generated between event-loop yields while nothing is sent
_RETRY_S: Final = 1.0


class _Publisher:
    """Feeds generated entries to the producer: skips what an earlier run already wrote, paces
    by event time, flushes in batches and keeps ``ctx.status`` current."""

    def __init__(
        self, ctx: ServiceContext[SimSettings], pace: float | None, resume: Resume
    ) -> None:
        self.ctx = ctx
        self.pace = pace
        self.resume = resume
        self.producer = Producer(ctx.redis, service=ctx.name)
        self.published = 0
        self.skipped = 0
        self.labels = 0
        self._wall0 = 0.0
        self._event0 = -1
        self._streams: dict[tuple[str, str], str] = {}

    def stream(self, symbol: str, kind: str) -> str:
        key = self._streams.get((symbol, kind))
        if key is None:
            key = self._streams[(symbol, kind)] = keys.stream(symbol, kind)
        return key

    def report(self, ts: int) -> None:
        self.ctx.status.update(
            published=self.published,
            skipped=self.skipped,
            labels=self.labels,
            event_time=_iso(ts),
        )

    async def skip(self, stream: str, ts: int, data: bytes) -> bool:
        """True if this entry was written by an earlier run (it is then not published)."""
        if not (self.resume.last and self.resume.skip(stream, ts, data)):
            return False
        self.skipped += 1
        if self.skipped % _YIELD_EVERY == 0:
            # Nothing is sent while catching up: let health reports and signals through.
            self.report(ts)
            await asyncio.sleep(0)
        return True

    async def publish(self, ts: int, stream: str, data: bytes) -> None:
        ctx = self.ctx
        if self.pace is not None:
            # Event time maps to wall time from the first published entry; the wall clock only
            # paces, nothing it says ends up in a message.
            if self._event0 < 0:
                self._wall0, self._event0 = ctx.clock.monotonic(), ts
            due = self._wall0 + (ts - self._event0) / 1e9 / self.pace
            wait = due - ctx.clock.monotonic()
            if wait > _MIN_SLEEP_S:
                await self.flush()
                self.report(ts)
                await _sleep(ctx, wait)
        self.producer.add_encoded(stream, data)
        self.published += 1
        if len(self.producer) >= _BATCH:
            await self.flush()
            self.report(ts)

    async def flush(self) -> None:
        """Flush, retrying while Redis is away or refuses writes (the producer keeps what it
        could not write) until stopped."""
        while True:
            try:
                await self.producer.flush()
                return
            except (RedisConnectionError, RedisTimeout, OSError, WriteRefused) as err:
                if self.ctx.stop.is_set():
                    raise
                log.warning("publishing failed, retrying: %s", err)
                await _sleep(self.ctx, _RETRY_S)


async def _sleep(ctx: ServiceContext[SimSettings], seconds: float) -> bool:
    """Sleep up to ``seconds``; True if the service was stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.stop.wait(), seconds)
    return ctx.stop.is_set()


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


async def _run(ctx: ServiceContext[SimSettings], config: SimConfig, out: _Publisher) -> bool:
    """Publish the whole run; True if it reached its end, False if stopped first."""
    path = ctx.settings.sim_labels_path
    writer = LabelWriter(path) if path else None
    try:
        for ts, item in events(config):
            if ctx.stop.is_set():
                return False
            if isinstance(item, Label):
                out.labels += 1
                if writer is not None:
                    writer.write(item)
                continue
            stream = out.stream(item.symbol, item.kind)
            data = codec.encode(item.msg)
            if not await out.skip(stream, ts, data):
                await out.publish(ts, stream, data)
        return True
    finally:
        if writer is not None:
            writer.close()
        await out.flush()


async def main(ctx: ServiceContext[SimSettings]) -> None:
    settings = ctx.settings
    instruments = settings.instruments_to_run()
    config = settings.config(instruments)
    pace = settings.pace()
    ctx.status.update(
        instruments=",".join(i.symbol for i in instruments),
        seed=config.seed,
        speed="max" if pace is None else pace,
        done=False,
    )
    if not instruments:
        log.warning("no instrument to simulate (OF_SIM_INSTRUMENTS / OF_INSTRUMENTS)")
        await ctx.stop.wait()
        return
    resume = Resume()
    if settings.sim_resume:
        await resume.load(ctx.redis, instruments)
    log.info(
        "simulating %s from %s, seed %d, speed %s",
        ctx.status["instruments"],
        _iso(config.start_ns),
        config.seed,
        ctx.status["speed"],
        extra={"resuming": sorted(resume.last)},
    )
    out = _Publisher(ctx, pace, resume)
    done = await _run(ctx, config, out)
    ctx.status.update(published=out.published, skipped=out.skipped, labels=out.labels, done=done)
    if done:
        log.info("simulation complete: %d entries published, %d labels", out.published, out.labels)
        # Stay up (and healthy) so a supervisor does not restart a finished run.
        await ctx.stop.wait()


SERVICE = Service(
    name="sim",
    settings_type=SimSettings,
    main=main,
    summary="seeded order-flow simulator: trades, L2 book and labelled episodes",
)
