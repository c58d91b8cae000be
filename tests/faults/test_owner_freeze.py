"""Fault: the owning analytics worker frozen (SIGSTOP) mid-stream past its lease, then resumed.

A second worker takes the instrument over while the first is frozen; the outputs must equal an
uninterrupted run's, and the frozen worker, once resumed, must find its lease gone and write
nothing more (its fenced reads and checkpoints are refused).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from tests.support.faults import analytics
from tests.support.faults.analytics import Workers
from tests.support.faults.recording import SYMBOL, real_recording
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import wait_for

from ofcommon import keys
from ofcommon.db import migrate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(150),
]

FROZEN_S = 6.0  # three lease lifetimes (OF_LEASE_TTL_S=2)
REFUSED = ("lease lost", "checkpoint refused")


def test_frozen_owner_is_fenced_and_the_new_owner_is_exact(
    case: Case, own_redis: OwnRedis, database_url: str, tmp_path: Path
) -> None:
    case.fault = "owner frozen (SIGSTOP) past its lease"
    case.checked = "new owner's output exact; the resumed old owner is fenced and adds nothing"
    migrate(database_url)
    r = own_redis.client()
    workers = Workers(analytics.env(own_redis.url, database_url, [SYMBOL]), tmp_path)
    items = real_recording()
    half = len(items) // 2
    try:
        asyncio.run(analytics.publish(own_redis.url, items[:half]))  # a backlog to be mid-way in
        first = analytics.reference(r, SYMBOL)
        total_first = sum(len(v) for v in first.values())
        # small reads: the old owner is still folding the backlog when it is frozen
        workers.env["OF_READ_COUNT"] = "20"
        old = workers.spawn("analytics-old")
        wait_for(lambda: analytics.output_count(r, SYMBOL) > 100, 60, "the old owner to publish")
        old.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        frozen_at = analytics.output_count(r, SYMBOL)
        case.figures["frozen after"] = f"{frozen_at}/{total_first} outputs"
        try:
            del workers.env["OF_READ_COUNT"]
            workers.spawn("analytics-new")
            wait_for(
                lambda: analytics.owner(r, SYMBOL) == "analytics-new", 30, "the new owner's lease"
            )
            asyncio.run(analytics.publish(own_redis.url, items[half:]))
            expected = analytics.reference(r, SYMBOL)
            analytics.wait_caught_up(r, SYMBOL, expected, 60, "the new owner to catch up")
            time.sleep(max(0.0, FROZEN_S - (time.monotonic() - frozen)))
        finally:
            old.send_signal(signal.SIGCONT)
        before = analytics.actual(r, SYMBOL)

        def fenced() -> bool:
            log = workers.log("analytics-old")
            return any(text in log for text in REFUSED) or "lost lease" in log

        wait_for(fenced, 15, "the resumed old owner to find its lease gone")
        time.sleep(2.0)  # what the old owner would write after waking up would show below
        after = analytics.actual(r, SYMBOL)
        assert after == before, "the resumed old owner changed the outputs"
        diffs = analytics.differences(expected, after)
        assert not diffs, "; ".join(diffs)
        bars, profiles = analytics.expected_rows(expected)
        assert bars
        assert analytics.stored_rows(database_url, SYMBOL) == (bars, profiles)
        assert r.xlen(keys.dead_letters(SYMBOL)) == 0
        workers.assert_alive("analytics-old")
        workers.assert_alive("analytics-new")
        log = workers.log("analytics-old")
        case.figures["old owner refused"] = (
            "checkpoint/read" if any(t in log for t in REFUSED) else "lease (tick)"
        )
    finally:
        workers.close()
        r.close()
