"""Fault: Redis (AOF on) stopped and started on the same port mid-stream.

Once with ``ofx replay --ids derived`` over the real capture feeding a real analytics worker:
both must resume within 5 s, and the streams and PostgreSQL rows must equal an uninterrupted
run's (the pure fold over the recording). Once with the live Bybit feed against the fake Bybit:
it must resume within 5 s and publish every trade once and a book without unmarked holes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as sync_redis
from tests.support.faults import analytics, feed
from tests.support.faults.analytics import Workers
from tests.support.faults.recording import SYMBOL, real_recording, write_recording
from tests.support.faults.report import Case
from tests.support.faults.servers import OwnRedis
from tests.support.servers import stop, wait_for

from ofcommon import codec, keys
from ofcommon.db import migrate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(150),
]

RESUME_S = 5.0
# the 346 s capture in ~12 s: the restart lands mid-stream
REPLAY_ARGS = ("--ids", "derived", "--speed", "30")


def _replay(path: Path, environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ofcommon.cli", "replay", str(path), *REPLAY_ARGS],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=analytics.REPO,
        )


def _inputs(r: sync_redis.Redis, kind: str) -> int:
    return int(r.xlen(keys.stream(SYMBOL, kind)))


def test_redis_restart_mid_stream(
    case: Case, own_redis: OwnRedis, database_url: str, tmp_path: Path
) -> None:
    case.fault = "Redis restarted mid-stream"
    case.checked = (
        "replay and analytics resume within 5 s; inputs, outputs and PostgreSQL rows equal"
        " the uninterrupted run's"
    )
    migrate(database_url)
    recording = write_recording(tmp_path / "rec")
    environ = analytics.env(own_redis.url, database_url, [SYMBOL])
    workers = Workers(environ, tmp_path)
    r = own_redis.client()
    replay_log = tmp_path / "replay.log"
    problems: list[str] = []
    try:
        workers.spawn("analytics-0")
        wait_for(lambda: analytics.owner(r, SYMBOL) == "analytics-0", 60, "the worker to own")
        replay = _replay(recording, environ, replay_log)
        wait_for(lambda: analytics.output_count(r, SYMBOL) > 500, 60, "outputs before the fault")
        assert replay.poll() is None, "the replay ended before the fault: slow it down"
        inputs_before = _inputs(r, "trades") + _inputs(r, "book")
        outputs_before = analytics.output_count(r, SYMBOL)

        own_redis.restart(down_s=1.0)
        back = time.monotonic()  # the client reconnects on its next command
        health = keys.health("analytics", "analytics-0")
        r.delete(health)  # restored from the AOF: only a report written from now on counts

        try:
            wait_for(lambda: r.exists(health), RESUME_S, "analytics to report health again")
            case.figures["analytics health after"] = f"{time.monotonic() - back:.1f} s"
        except AssertionError as err:
            problems.append(f"analytics: {err}")

        def inputs_grew() -> bool:
            written = _inputs(r, "trades") + _inputs(r, "book")
            return replay.poll() is None and written > inputs_before

        try:
            wait_for(inputs_grew, RESUME_S, "ofx replay to resume writing")
            case.figures["replay resumed after"] = f"{time.monotonic() - back:.1f} s"
        except AssertionError:
            tail = replay_log.read_text(errors="replace").splitlines()[-1:]
            problems.append(f"ofx replay did not resume within {RESUME_S:.0f} s: {tail}")
            replay.wait(30)
            replay = _replay(recording, environ, replay_log)  # derived IDs: a re-run is safe
            wait_for(inputs_grew, 30, "a second ofx replay to write")
        fed = time.monotonic()
        try:
            wait_for(
                lambda: analytics.output_count(r, SYMBOL) > outputs_before,
                RESUME_S,
                "analytics to resume publishing once inputs flow",
            )
            case.figures["analytics output after"] = f"{time.monotonic() - fed:.1f} s"
        except AssertionError as err:
            problems.append(f"analytics: {err}")
        assert replay.wait(90) == 0, replay_log.read_text(errors="replace")[-2000:]
        workers.assert_alive("analytics-0")

        # the inputs hold the recording exactly once: the restart lost and repeated nothing
        for kind in analytics.INPUTS:
            got = [codec.decode(f[codec.FIELD]) for _, f in r.xrange(keys.stream(SYMBOL, kind))]
            want = [p.msg for p in real_recording() if p.kind == kind]
            if got != want:
                problems.append(f"input {kind}: {len(got)} messages, the recording has {len(want)}")

        expected = analytics.reference(r, SYMBOL)
        analytics.wait_caught_up(r, SYMBOL, expected, 60, "analytics to catch up")
        time.sleep(0.5)  # anything written late or twice would show below
        problems += analytics.differences(expected, analytics.actual(r, SYMBOL))
        bars, profiles = analytics.expected_rows(expected)
        assert bars
        assert profiles
        if analytics.stored_rows(database_url, SYMBOL) != (bars, profiles):
            problems.append("PostgreSQL rows differ from the uninterrupted run's")
        if r.xlen(keys.dead_letters(SYMBOL)):
            problems.append(f"{r.xlen(keys.dead_letters(SYMBOL))} dead letters")
        case.figures["outputs"] = str(sum(len(v) for v in expected.values()))
        assert not problems, "; ".join(problems)
    finally:
        workers.close()
        r.close()


async def test_feed_resumes_after_redis_restart(
    case: Case, own_redis: OwnRedis, tmp_path: Path
) -> None:
    case.fault = "Redis restarted under the feed"
    case.checked = "feed_bybit resumes within 5 s; every trade once, no unmarked book hole"
    fake, trades, book = feed.market()
    r = own_redis.client()
    async with fake:
        proc = feed.spawn(own_redis.url, fake, tmp_path)
        try:
            await asyncio.to_thread(
                wait_for, lambda: len(fake.subscribed("linear")) == 2, 60, "the feed to subscribe"
            )
            fake.start_market()
            await fake.wait_steps(150)
            await asyncio.to_thread(own_redis.restart, 1.0)  # the market goes on meanwhile
            back = time.monotonic()  # the client reconnects on its next command
            written = _inputs(r, "trades")
            await asyncio.to_thread(
                wait_for,
                lambda: proc.poll() is None and _inputs(r, "trades") > written,
                RESUME_S,
                "the feed to publish again",
            )
            case.figures["feed resumed after"] = f"{time.monotonic() - back:.1f} s"
            await fake.wait_market_done()
            with contextlib.suppress(AssertionError):  # judged below, with the reason
                await asyncio.to_thread(
                    wait_for, lambda: not feed.problems(r, trades, book), 15, "the feed to settle"
                )
            await asyncio.sleep(1.0)  # anything written late or twice would show below
            assert proc.poll() is None, "the feed died"
            case.figures["gaps"] = str(feed.gaps(r))
            found = feed.problems(r, trades, book)
            assert not found, "; ".join(found)
        finally:
            await asyncio.to_thread(stop, proc)
            r.close()
