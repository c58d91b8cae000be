"""A trivial stateful stage for crash tests: counts each instrument's trades and volume.

Its outputs are Trades whose ``seq`` is the running count and ``size`` the running volume, so an
interrupted run that is not exactly-once shows as a wrong, missing or repeated output entry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import msgspec

from ofcommon.entry_ids import ZERO, EntryId
from ofcommon.messages import Message, Trade
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import Output, StructStateFold, run_owned


class CountState(msgspec.Struct):
    count: int = 0
    volume: float = 0.0


class CountingFold(StructStateFold[CountState]):
    stage = "counting"
    inputs = ("trades",)
    state_type = CountState

    def __init__(self, work_s: float = 0.0) -> None:
        # simulated per-message work, so a test can kill the stage while it is mid-stream
        self._work_s = work_s

    def initial(self, symbol: str) -> CountState:
        return CountState()

    def step(
        self, state: CountState, kind: str, msg: Message, at: EntryId = ZERO
    ) -> Sequence[Output]:
        if not isinstance(msg, Trade):
            return ()
        if self._work_s:
            time.sleep(self._work_s)
        state.count += 1
        state.volume += msg.size
        out = msgspec.structs.replace(msg, seq=state.count, size=state.volume)
        return (("counts", out),)


async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
    await run_owned(ctx, CountingFold(float(os.environ.get("COUNTING_WORK_S", "0"))))


SERVICE = Service(name="counting", settings_type=OwnedStageSettings, main=main)
