"""Fault: PostgreSQL stopped for 30 s while analytics folds the real capture, then restarted.

The stage's own embedded PostgreSQL (never the machine's) goes down between two closed bars and
comes back on the same port; the streams and the stored rows must equal an uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.support.faults import analytics
from tests.support.faults.analytics import Workers
from tests.support.faults.recording import SYMBOL, real_recording
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnPostgres, OwnRedis
from tests.support.servers import wait_for

from ofcommon import keys
from ofcommon.db import migrate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

OUTAGE_S = 30.0


def test_postgres_stopped_30_s(
    case: Case, own_redis: OwnRedis, free_tmp: Path, tmp_path: Path
) -> None:
    case.fault = "PostgreSQL stopped 30 s"
    case.checked = "streams and stored bars/profiles equal the uninterrupted run's"
    pg = OwnPostgres(free_tmp / "pg")
    r = own_redis.client()
    workers = Workers(analytics.env(own_redis.url, pg.url, [SYMBOL]), tmp_path)
    items = real_recording()
    third = len(items) // 3
    try:
        migrate(pg.url)
        workers.spawn("analytics-0")
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 60, "the worker to own")
        asyncio.run(analytics.publish(own_redis.url, items[:third]))
        first = analytics.reference(r, SYMBOL)
        analytics.wait_caught_up(r, SYMBOL, first, 60, "the first third folded")
        assert analytics.stored_rows(pg.url, SYMBOL)[0], "no bar stored before the outage"

        pg.stop()
        down = time.monotonic()
        asyncio.run(analytics.publish(own_redis.url, items[third : 2 * third]))
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        workers.assert_alive("analytics-0")
        # the outage must have hit a write, or this case proves nothing
        assert "PostgreSQL write failed" in workers.log("analytics-0"), "no write hit the outage"
        case.figures["restarts while down"] = str(workers.restarts("analytics-0"))
        pg.start()
        up = time.monotonic()
        asyncio.run(analytics.publish(own_redis.url, items[2 * third :]))

        expected = analytics.reference(r, SYMBOL)
        analytics.wait_caught_up(r, SYMBOL, expected, 60, "analytics to catch up after the outage")
        case.figures["caught up after restart"] = f"{time.monotonic() - up:.1f} s"
        bars, profiles = analytics.expected_rows(expected)
        wait_for(
            lambda: analytics.stored_rows(pg.url, SYMBOL) == (bars, profiles),
            20,
            "PostgreSQL to hold exactly the uninterrupted run's rows",
        )
        time.sleep(0.5)  # anything written late or twice would show below
        diffs = analytics.differences(expected, analytics.actual(r, SYMBOL))
        assert not diffs, "; ".join(diffs)
        assert analytics.stored_rows(pg.url, SYMBOL) == (bars, profiles)
        assert r.xlen(keys.dead_letters(SYMBOL)) == 0
        workers.assert_alive("analytics-0")
        case.figures["rows"] = f"{len(bars)} bars, {len(profiles)} profiles"
    finally:
        workers.close()
        r.close()
        pg.close()
