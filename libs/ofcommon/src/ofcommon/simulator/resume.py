"""Where an earlier run of the simulator stopped writing, so a restarted service continues after
it instead of repeating entries or sending event time backwards.
"""

from __future__ import annotations

import logging
from typing import Any

from ofcommon import codec, keys
from ofcommon.bus import Redis
from ofcommon.instruments import Instrument
from ofcommon.messages import Heartbeat, Message, Trade
from ofcommon.simulator.exchange import SOURCE

__all__ = ["Resume"]

log = logging.getLogger(__name__)


class Resume:
    """Where each stream stopped in an earlier run: generated entries up to and including the one
    equal to the stream's last entry are skipped, so a restart neither repeats nor rewinds."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, bytes]] = {}

    async def load(self, redis: Redis, instruments: tuple[Instrument, ...]) -> None:
        for inst in instruments:
            trades = keys.stream(inst.symbol, "trades")
            found = await _last_entry(redis, trades)
            if found is None:
                continue
            ts, raw, msg = found
            if not _ours(msg):
                log.warning(
                    "%s holds entries the simulator did not write; not resuming %s",
                    trades,
                    inst.symbol,
                    extra={"stream": trades},
                )
                continue
            self.last[trades] = (ts, raw)
            book = keys.stream(inst.symbol, "book")
            found = await _last_entry(redis, book)
            if found is not None:
                self.last[book] = (found[0], found[1])

    def skip(self, stream: str, ts: int, data: bytes) -> bool:
        mark = self.last.get(stream)
        if mark is None:
            return False
        last_ts, raw = mark
        if data == raw:
            del self.last[stream]
            return True
        if ts > last_ts:
            # The stream's last entry is not in this run's output (another seed or settings):
            # continue after it, in event-time order.
            del self.last[stream]
            log.warning("%s: last entry not reproduced by this run; continuing after it", stream)
            return False
        return True


async def _last_entry(redis: Redis, stream: str) -> tuple[int, bytes, Message] | None:
    reply: Any = await redis.xrevrange(stream, count=1)
    if not reply:
        return None
    raw = reply[0][1].get(codec.FIELD)
    if not isinstance(raw, bytes):
        return None
    try:
        msg = codec.decode(raw)
    except codec.DecodeError:
        return None
    return int(getattr(msg, "ts_event", 0)), raw, msg


def _ours(msg: Message) -> bool:
    if isinstance(msg, Trade):
        return msg.trade_id.startswith("sim-")
    return isinstance(msg, Heartbeat) and msg.source == SOURCE
