"""The analytics stage under a fault: its worker processes, its inputs, and the reference run.

The reference is the pure ``AnalyticsFold`` over the input streams as they stand, in entry-ID
order with IDs derived the way the stage derives them: what an uninterrupted run writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import redis as sync_redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from of_analytics.fold import AnalyticsFold
from of_analytics.persist import BAR_TIMEFRAME, AnalyticsStore
from ofcommon import codec, entry_ids, keys
from ofcommon.bus import Producer
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, ProfileUpdate
from ofcommon.stage import assign_ids
from ofcommon.venue import Published
from tests.support.servers import spawn_service, stop, wait_for

REPO: Final = Path(__file__).resolve().parents[3]
TARGET: Final = "of_analytics.service:SERVICE"
STAGE: Final = "analytics"
INPUTS: Final = ("trades", "book")
OUTPUTS: Final = ("bars", "profile", "bookstats", "consumption")

Entries = list[tuple[str, bytes]]


def env(redis_url: str, database_url: str, symbols: Sequence[str], **extra: str) -> dict[str, str]:
    """A service environment on the case's own servers, nothing inherited from ``OF_*``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OF_")}
    return {
        **base,
        "PYTHONPATH": str(REPO),
        "OF_REDIS_URL": redis_url,
        "OF_DATABASE_URL": database_url,
        "OF_LOG_FORMAT": "json",
        "OF_INSTRUMENTS": ",".join(symbols),
        "OF_CHECKPOINT_INTERVAL_S": "0.2",
        "OF_READ_COUNT": "200",
        "OF_LEASE_TTL_S": "2",
        "OF_WORKER_DEAD_AFTER_S": "1",
        "OF_MEMBERSHIP_TICK_S": "0.2",
        "OF_HEALTH_TTL_S": "2",
        **extra,
    }


class Workers:
    """Analytics worker processes started by one case; ``close`` stops whatever still runs."""

    def __init__(self, environ: dict[str, str], log_dir: Path) -> None:
        self.env = environ
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, worker_id: str) -> subprocess.Popen[bytes]:
        proc = spawn_service(TARGET, self.env, self.log_dir, worker_id, OF_WORKER_ID=worker_id)
        self.procs[worker_id] = proc
        return proc

    def log(self, worker_id: str) -> str:
        path = self.log_dir / f"{worker_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, worker_id: str, n: int = 30) -> str:
        return "\n".join(self.log(worker_id).splitlines()[-n:])

    def assert_alive(self, worker_id: str) -> None:
        proc = self.procs[worker_id]
        assert proc.poll() is None, (
            f"{worker_id} exited with {proc.returncode}\n{self.tail(worker_id)}"
        )

    def restarts(self, worker_id: str) -> int:
        """How often an instrument task of this worker crashed and restarted from its checkpoint."""
        return self.log(worker_id).count("crashed; restarting from checkpoint")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    stop(proc, 10)


def owner(r: sync_redis.Redis, symbol: str) -> str | None:
    """The worker holding the instrument's lease, if any."""
    value = r.get(keys.lease(symbol, STAGE))
    return None if value is None else bytes(value).decode().rsplit(":", 1)[0]


async def publish(url: str, items: Iterable[Published], *, chunk: int = 500) -> None:
    """Write ``items`` as a feed does (IDs ``*``), retrying a flush while Redis is away."""
    client = aioredis.Redis.from_url(url)
    try:
        producer = Producer(client, service="faults", trim_by_age=False)
        for i, item in enumerate(items, 1):
            producer.add(keys.stream(item.symbol, item.kind), item.msg)
            if i % chunk == 0:
                await _flush(producer)
        await _flush(producer)
    finally:
        await client.aclose()


async def _flush(producer: Producer) -> None:
    for _ in range(200):
        try:
            await producer.flush()
            return
        except (OSError, RedisConnectionError):
            await asyncio.sleep(0.1)  # a connection error keeps the buffer: the retry loses none
    raise AssertionError("the test's writer could not reach Redis for 20 s")


def _decodable(r: sync_redis.Redis, stream: str, skip: frozenset[str]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for entry_id, fields in r.xrange(stream):
        data = fields.get(codec.FIELD)
        if entry_id.decode() in skip or data is None:
            continue
        try:
            codec.decode(data)
        except codec.DecodeError:
            continue  # the stage dead-letters it
        out.append((entry_id.decode(), data))
    return out


def reference(
    r: sync_redis.Redis, symbol: str, skip: frozenset[str] = frozenset()
) -> dict[str, Entries]:
    """What an uninterrupted run writes for ``symbol`` over its input streams as they stand.

    ``skip`` names input entry IDs the stage must dead-letter rather than fold (a poison entry).
    """
    fold = AnalyticsFold(load_registry())
    state = fold.initial(symbol)
    last: dict[str, entry_ids.EntryId] = {}
    out: dict[str, Entries] = {k: [] for k in OUTPUTS}
    entries = sorted(
        (entry_ids.parse(entry_id), n, kind, data)
        for n, kind in enumerate(fold.inputs)
        for entry_id, data in _decodable(r, keys.stream(symbol, kind), skip)
    )
    for at, _, kind, data in entries:
        for out_kind, out_id, result in assign_ids(
            fold.step(state, kind, codec.decode(data), at), at, last
        ):
            out[out_kind].append((str(out_id), codec.encode(result)))
    return out


def actual(r: sync_redis.Redis, symbol: str) -> dict[str, Entries]:
    return {
        k: [(i.decode(), f[codec.FIELD]) for i, f in r.xrange(keys.stream(symbol, k))]
        for k in OUTPUTS
    }


def output_count(r: sync_redis.Redis, symbol: str) -> int:
    return sum(int(r.xlen(keys.stream(symbol, k))) for k in OUTPUTS)


def wait_caught_up(
    r: sync_redis.Redis, symbol: str, expected: dict[str, Entries], within: float, what: str
) -> None:
    def done() -> bool:
        return all(r.xlen(keys.stream(symbol, k)) >= len(expected[k]) for k in OUTPUTS)

    try:
        wait_for(done, within, what)
    except AssertionError as err:
        # the likeliest reason the outputs fall short: inputs dead-lettered instead of folded
        reasons = Counter(
            bytes(f[b"reason"]).decode().split(":")[0]
            for _, f in r.xrange(keys.dead_letters(symbol))
        )
        raise AssertionError(f"{err}; dead letters by reason: {dict(reasons) or 'none'}") from None


def differences(expected: dict[str, Entries], got: dict[str, Entries]) -> list[str]:
    """One line per output stream that differs from the reference (empty: identical)."""
    out = []
    for kind in OUTPUTS:
        want, have = expected[kind], got[kind]
        if want == have:
            continue
        want_ids, have_ids = {i for i, _ in want}, {i for i, _ in have}
        changed = sum(1 for (i, d), (j, e) in zip(want, have, strict=False) if i == j and d != e)
        out.append(
            f"{kind}: {len(have)} entries, reference {len(want)};"
            f" missing {len(want_ids - have_ids)}, extra {len(have_ids - want_ids)},"
            f" changed {changed}"
        )
    return out


def expected_rows(expected: dict[str, Entries]) -> tuple[list[Bar], list[ProfileUpdate]]:
    """The rows an uninterrupted run stores: final 1m bars and final profiles, in read order."""
    bars = [m for m in (codec.decode(d) for _, d in expected["bars"]) if isinstance(m, Bar)]
    profiles = [
        m for m in (codec.decode(d) for _, d in expected["profile"]) if isinstance(m, ProfileUpdate)
    ]
    final_bars = sorted(
        (b for b in bars if b.final and b.timeframe == BAR_TIMEFRAME), key=lambda b: b.open_ts
    )
    final_profiles = sorted(
        (p for p in profiles if p.final), key=lambda p: (p.session_start, p.scope, p.session_id)
    )
    return final_bars, final_profiles


def stored_rows(database_url: str, symbol: str) -> tuple[list[Bar], list[ProfileUpdate]]:
    with AnalyticsStore(database_url) as store:
        return store.bars_between(symbol, 0, 2**62), store.profiles(symbol, 0)
