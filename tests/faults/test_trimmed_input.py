"""Fault: a lagging analytics worker whose unread input is trimmed away (``MAXLEN`` / ``MINID``).

The worker is frozen (inside its lease) while the feed writes on and the trades stream is trimmed
past the worker's position; once resumed it must mark the loss with a ``Gap`` on its outputs and
go on folding what follows, not skip the hole silently.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.faults import analytics
from tests.support.faults.analytics import Workers
from tests.support.faults.recording import SYMBOL, real_recording
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import wait_for

from ofcommon import codec, entry_ids, keys
from ofcommon.db import migrate
from ofcommon.messages import Gap

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(120),
]


def _gaps(r: sync_redis.Redis, symbol: str) -> list[tuple[str, Gap]]:
    out = []
    for kind in analytics.OUTPUTS:
        for _, fields in r.xrange(keys.stream(symbol, kind)):
            msg = codec.decode(fields[codec.FIELD])
            if isinstance(msg, Gap):
                out.append((kind, msg))
    return out


def test_trimmed_input_of_a_lagging_consumer_is_a_gap(
    case: Case, own_redis: OwnRedis, database_url: str, tmp_path: Path
) -> None:
    case.fault = "lagging consumer, input trimmed"
    case.checked = "a Gap on the stage's outputs, then the stage goes on"
    migrate(database_url)
    r = own_redis.client()
    # a long lease: the freeze below makes the worker lag, it must not lose the instrument
    workers = Workers(
        analytics.env(own_redis.url, database_url, [SYMBOL], OF_LEASE_TTL_S="10"), tmp_path
    )
    items = real_recording()
    third = len(items) // 3
    trades = keys.stream(SYMBOL, "trades")
    try:
        worker = workers.spawn("analytics-0")
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 60, "the worker to own")
        asyncio.run(analytics.publish(own_redis.url, items[:third]))
        first = analytics.reference(r, SYMBOL)
        analytics.wait_caught_up(r, SYMBOL, first, 60, "the first third folded")

        worker.send_signal(signal.SIGSTOP)
        try:
            asyncio.run(analytics.publish(own_redis.url, items[third : 2 * third]))
            group = next(g for g in r.xinfo_groups(trades) if g["name"] == b"analytics")
            delivered = entry_ids.parse(group["last-delivered-id"].decode())
            unread = [i for i, _ in r.xrange(trades) if entry_ids.parse(i.decode()) > delivered]
            assert len(unread) > 100, "the worker is not lagging: nothing to trim"
            cut = unread[len(unread) // 2]
            trimmed = r.xtrim(trades, minid=cut, approximate=False)
            case.figures["trimmed unread"] = str(len(unread) // 2)
            assert int(trimmed) >= len(unread) // 2
        finally:
            worker.send_signal(signal.SIGCONT)
        asyncio.run(analytics.publish(own_redis.url, items[2 * third :]))
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 5, "the lease kept")

        def gapped() -> list[tuple[str, Gap]]:
            return [(k, g) for k, g in _gaps(r, SYMBOL) if g.stream == "trades"]

        try:
            gaps = wait_for(gapped, 15, "a Gap on the outputs after the trim")
        finally:
            case.figures["output gaps"] = str(len(_gaps(r, SYMBOL)))
        case.figures["gap on"] = ",".join(sorted({k for k, _ in gaps}))
        # and it goes on: the last third (never trimmed) is folded
        last_trade = r.xrevrange(trades, count=1)[0][0].decode()
        wait_for(lambda: _position(r, trades) == last_trade, 30, "the worker to read to the end")
        workers.assert_alive("analytics-0")
    finally:
        workers.close()
        r.close()


def _position(r: sync_redis.Redis, stream: str) -> str:
    """The group's last delivered ID on ``stream`` (what the worker has read up to)."""
    for g in r.xinfo_groups(stream):
        if g["name"] == b"analytics":
            return str(g["last-delivered-id"].decode())
    return ""
