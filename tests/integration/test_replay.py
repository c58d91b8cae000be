"""Replay of recordings into a real Redis: determinism, derived IDs, dead letters, pacing, loops.

A JSON-lines test venue stands in for the feeds; the real Bybit parser replays real XRPUSDT frames.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.support.real_data import BYBIT_XRP_OB500
from tests.support.servers import wait_for

from of_feed_bybit.parser import BybitParser
from ofcommon import cli, codec, keys, logs, replay as replay_mod
from ofcommon.instruments import (
    BybitVenue,
    Instrument,
    Registry,
    default_instruments,
    load_registry,
)
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Message, Quote, Side, Trade
from ofcommon.recording import RecordingWriter, read_recording
from ofcommon.replay import ReplayError, ReplayStats, replay, shift_period
from ofcommon.venue import (
    ENTRY_POINT_GROUP,
    BadFrame,
    FrameParser,
    Published,
    RecordOptions,
    Venue,
)

pytestmark = [pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
BYBIT_XRP = BYBIT_XRP_OB500
needs_bybit_data = pytest.mark.skipif(
    not BYBIT_XRP.is_file(), reason=f"real data folder absent: {BYBIT_XRP} not found"
)

T0 = 1_733_011_200_691_000_000  # 2024-12-01T00:00:00.691Z in ns
MS = 1_000_000
MINUTE = 60_000_000_000


# --- the test venue ----------------------------------------------------------------------------


class JsonParser:
    """The test venue: a JSON object per frame, a trade (``i``, ``p``, ``q``, ``S``) or a quote
    (``b``, ``a``) of symbol ``s`` at ``T`` ms; ``ping`` is a control frame without output."""

    def __init__(self, category: str, registry: Registry) -> None:
        self._registry = registry

    def parse(self, recv_ns: int, frame: bytes) -> list[Published]:
        if frame == b"ping":
            return []
        try:
            d = json.loads(frame)
            if "boom" in d:
                raise RuntimeError("parser bug")
            symbol, ts = d["s"], int(d["T"]) * MS
            if symbol not in self._registry:
                raise BadFrame(f"unknown symbol {symbol!r}")
            if "b" in d:
                quote = Quote(ts, recv_ns, float(d["b"]), float(d["a"]))
                return [Published(symbol, "book", quote)]
            side = {"Buy": Side.BUY, "Sell": Side.SELL}[d["S"]]
            trade = Trade(ts, recv_ns, float(d["p"]), float(d["q"]), side, str(d["i"]))
        except (ValueError, KeyError, TypeError) as err:
            raise BadFrame(f"not a test frame: {err!r}") from None
        return [Published(symbol, "trades", trade)]


TEST_VENUE = Venue(name="test", categories=("spot",), parser=JsonParser)


def bybit_ob500_venue() -> Venue:
    """The real Bybit parser at the archive's retired depth 500 (the live venue uses 50)."""

    def parser(category: str, registry: Registry) -> FrameParser:
        assert category == "linear"
        return BybitParser("linear", registry, depth=500, allow_retired_depth=True)

    return Venue(name="bybit", categories=("linear",), parser=parser)


def lookup_with_test_venues(real: Callable[[str], Venue]) -> Callable[[str], Venue]:
    def lookup(name: str) -> Venue:
        if name == "test":
            return TEST_VENUE
        if name == "bybit":
            return bybit_ob500_venue()
        return real(name)

    return lookup


def install() -> None:
    """For ``ofx`` subprocesses: the test venues, then the real command line (see ``ofx()``)."""
    replay_mod.load_venue = lookup_with_test_venues(replay_mod.load_venue)


@pytest.fixture
def venues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "load_venue", lookup_with_test_venues(replay_mod.load_venue))


# --- recordings --------------------------------------------------------------------------------


def trade(recv_ns: int, symbol: str, n: int) -> tuple[int, bytes]:
    side = "Buy" if n % 3 else "Sell"
    body = {"s": symbol, "T": recv_ns // MS - 3, "p": 100 + n, "q": 0.5 * n, "S": side, "i": n}
    return recv_ns, json.dumps(body).encode()


def quote(recv_ns: int, symbol: str, n: int) -> tuple[int, bytes]:
    body = {"s": symbol, "T": recv_ns // MS - 2, "b": 99.5 + n, "a": 100.5 + n}
    return recv_ns, json.dumps(body).encode()


def market(n: int = 40, start: int = T0, step_ms: int = 50) -> list[tuple[int, bytes]]:
    """Trades and quotes of two instruments, ``step_ms`` apart (40 frames span 1.95 s)."""
    out = []
    for i in range(n):
        recv = start + i * step_ms * MS
        symbol = "BTCUSDT" if i % 2 == 0 else "XAUUSDT"
        out.append(quote(recv, symbol, i) if i % 5 == 4 else trade(recv, symbol, i))
    return out


def record(
    directory: Path,
    frames: list[tuple[int, bytes]],
    venue: str = "test",
    category: str = "spot",
    **rotate: Any,
) -> list[Path]:
    with RecordingWriter(directory, venue, category, **rotate) as writer:
        for recv_ns, frame in frames:
            writer.write(recv_ns, frame)
    return writer.paths


@pytest.fixture
def registry() -> Registry:
    return load_registry()


XRPUSDT = Instrument(
    symbol="XRPUSDT",
    group="crypto",
    tick_size=0.0001,
    row_size=0.001,
    session="FULL_DAY",
    bybit=BybitVenue(category="linear", symbol="XRPUSDT"),
)
XRPUSDT_TOML = """
[instruments.XRPUSDT]
group = "crypto"
tick_size = 0.0001
row_size = 0.001
session = "FULL_DAY"
bybit = { category = "linear", symbol = "XRPUSDT" }
"""


def bybit_frames() -> list[tuple[int, bytes]]:
    """The 50 real frames. The archive keeps no receive time: Bybit's send time ``ts`` (ms), the
    nearest thing to one, stands in for it (a recorder's receive time comes a little later)."""
    frames = [line.rstrip(b"\r\n") for line in BYBIT_XRP.read_bytes().splitlines()]
    return [(json.loads(f)["ts"] * MS, f) for f in frames]


# --- reading the result back -------------------------------------------------------------------

Dump = dict[str, list[tuple[str, tuple[tuple[bytes, bytes], ...]]]]


async def dump(redis: aioredis.Redis) -> Dump:
    """Every stream: (entry ID, sorted fields) in stream order."""
    out: Dump = {}
    async for key in redis.scan_iter(match="of:*", _type="stream"):
        entries = await redis.xrange(key)
        out[key.decode()] = [(i.decode(), tuple(sorted(f.items()))) for i, f in entries]
    return dict(sorted(out.items()))


def payloads(d: Dump) -> dict[str, list[tuple[tuple[bytes, bytes], ...]]]:
    return {stream: [fields for _, fields in entries] for stream, entries in d.items()}


async def messages(redis: aioredis.Redis, stream: str) -> list[Message]:
    return [codec.decode(f[codec.FIELD]) for _, f in await redis.xrange(stream)]


async def trades(redis: aioredis.Redis, stream: str) -> list[Trade]:
    msgs = await messages(redis, stream)
    out = [m for m in msgs if isinstance(m, Trade)]
    assert len(out) == len(msgs)
    return out


TRADES = keys.stream("BTCUSDT", "trades")


# --- publishing --------------------------------------------------------------------------------


async def test_frames_are_parsed_and_published_to_the_instrument_streams(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    frames = market()
    stats = await replay(redis, record(tmp_path, frames), registry=registry)
    assert stats.frames == 40
    assert stats.messages == {"trades": 32, "book": 8}
    assert (stats.added, stats.duplicates, stats.bad_frames, stats.passes) == (40, 0, 0, 1)
    assert stats.span_s == pytest.approx(1.95)
    parser = JsonParser("spot", registry)
    expected = [p.msg for f in frames for p in parser.parse(*f) if p.symbol == "BTCUSDT"]
    got = await messages(redis, TRADES) + await messages(redis, keys.stream("BTCUSDT", "book"))
    assert sorted(got, key=lambda m: m.ts_recv) == expected
    assert await redis.xlen(keys.stream("XAUUSDT", "trades")) == 16


async def test_replaying_twice_gives_identical_stream_contents(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    paths = record(tmp_path, [*market(), (T0 + 5 * MS, b"garbage")], rotate_bytes=500)
    await replay(redis, paths, registry=registry)
    first = await dump(redis)
    await redis.flushdb()
    await replay(redis, paths, registry=registry)
    second = await dump(redis)
    assert len(paths) > 1
    assert set(first) == {
        "of:dlq",
        "of:{BTCUSDT}:book",
        "of:{BTCUSDT}:trades",
        "of:{XAUUSDT}:book",
        "of:{XAUUSDT}:trades",
    }
    assert payloads(first) == payloads(second)  # message for message; auto IDs differ


async def test_derived_ids_come_from_receive_time_with_a_per_stream_sequence(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    recv = T0 + 250_000  # mid-millisecond: the ID takes the millisecond, the sequence the rest
    frames = [trade(recv, "BTCUSDT", 1), trade(recv, "BTCUSDT", 2), trade(recv, "XAUUSDT", 3)]
    frames += [trade(recv + MS, "BTCUSDT", 4), trade(recv + MS - 1, "BTCUSDT", 5)]
    await replay(redis, record(tmp_path, frames), registry=registry, ids="derived")
    ms = recv // MS
    seq = 250_000 * 1024  # ns within the ms, times 1024 slots for the outputs of one receive time
    ids = [i.decode() for i, _ in await redis.xrange(TRADES)]
    # two frames received at the same ns take consecutive slots; the last frame's clock stepped
    # back into the previous millisecond: it takes the next sequence number
    assert ids == [f"{ms}-{seq}", f"{ms}-{seq + 1}", f"{ms + 1}-{seq}", f"{ms + 1}-{seq + 1}"]
    xau = await redis.xrange(keys.stream("XAUUSDT", "trades"))
    assert [i.decode() for i, _ in xau] == [f"{ms}-{seq}"]


async def test_a_second_derived_replay_writes_nothing_new(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    frames = [*market(), (T0 + 7 * MS, b"garbage"), (T0 + 9 * MS, b"{not json")]
    paths = record(tmp_path, frames)
    first = await replay(redis, paths, registry=registry, ids="derived")
    before = await dump(redis)
    second = await replay(redis, paths, registry=registry, ids="derived")
    assert (first.added, first.duplicates, first.dead_letters) == (40, 0, 2)
    assert (second.added, second.duplicates, second.dead_letters) == (0, 42, 0)
    assert await dump(redis) == before  # IDs and payloads, dead letters included


async def test_an_interrupted_derived_replay_completes_exactly_when_run_again(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    frames = market()
    full = record(tmp_path / "full", frames)
    partial = record(tmp_path / "partial", frames[:17])  # what a killed replay got through
    await replay(redis, partial, registry=registry, ids="derived")
    stats = await replay(redis, full, registry=registry, ids="derived")
    resumed = await dump(redis)
    await redis.flushdb()
    await replay(redis, full, registry=registry, ids="derived")
    assert (stats.added, stats.duplicates) == (23, 17)
    assert resumed == await dump(redis)


# --- bad input ---------------------------------------------------------------------------------


async def test_bad_frames_are_dead_lettered_with_reason_and_replay_goes_on(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    bad = [
        (T0 + 1 * MS, b"garbage"),
        (T0 + 2 * MS, b'{"s":"NOPE","T":1,"p":1,"q":1,"S":"Buy","i":1}'),
        (T0 + 3 * MS, b"\xff\xfe binary"),
    ]
    frames = [
        trade(T0, "BTCUSDT", 0),
        *bad,
        (T0 + 4 * MS, b"ping"),
        trade(T0 + 5 * MS, "BTCUSDT", 1),
    ]
    paths = record(tmp_path, frames)
    stats = await replay(redis, paths, registry=registry)
    assert (stats.frames, stats.bad_frames, stats.dead_letters) == (6, 3, 3)
    assert [t.trade_id for t in await trades(redis, TRADES)] == ["0", "1"]
    dead = await redis.xrange(keys.dead_letters(None))
    assert [f[codec.FIELD] for _, f in dead] == [frame for _, frame in bad]  # the raw frames
    for (_, fields), (n, (recv_ns, _)) in zip(
        dead, [(2, bad[0]), (3, bad[1]), (4, bad[2])], strict=True
    ):
        assert fields[b"reason"].startswith(b"malformed: ")
        assert fields[b"origin"] == f"replay:{paths[0].name}".encode()
        assert fields[b"origin_id"] == f"{n}@{recv_ns}".encode()  # frame number in the file
        assert fields[b"stage"] == b"replay"
    assert b"unknown symbol 'NOPE'" in dead[1][1][b"reason"]


async def test_a_parser_crash_is_dead_lettered_as_a_fold_error(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    frames = [trade(T0, "BTCUSDT", 0), (T0 + MS, b'{"boom":1}'), trade(T0 + 2 * MS, "BTCUSDT", 1)]
    stats = await replay(redis, record(tmp_path, frames), registry=registry)
    assert (stats.bad_frames, await redis.xlen(TRADES)) == (1, 2)
    ((_, fields),) = await redis.xrange(keys.dead_letters(None))
    assert fields[b"reason"] == b"fold-error: RuntimeError: parser bug"


async def test_a_corrupt_line_stops_the_replay_naming_file_and_line(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "test-spot-20241201T000000Z.gz"
    lines = [b"%d %s\n" % trade(T0 + i * MS, "BTCUSDT", i) for i in range(2)]
    path.write_bytes(gzip.compress(b"".join([*lines, b"oops\n", lines[0]])))
    with pytest.raises(ReplayError, match=rf"^{path}:3: expected"):
        await replay(redis, [path], registry=registry)
    assert await redis.xlen(TRADES) == 2  # what came before is published: a consistent prefix


async def test_a_killed_recorders_file_replays_up_to_its_last_flush(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    writer = RecordingWriter(tmp_path / "live", "test", "spot")
    for recv_ns, frame in market(10):
        writer.write(recv_ns, frame)
    writer.flush()
    killed = tmp_path / writer.paths[0].name
    killed.write_bytes(writer.paths[0].read_bytes())  # no gzip trailer, as after SIGKILL
    writer.close()
    stats = await replay(redis, [killed], registry=registry)
    assert (stats.frames, stats.truncated_files, stats.added) == (10, 1, 10)


# --- venues and files --------------------------------------------------------------------------


def entry_points_of(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str]) -> None:
    installed = EntryPoints(EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in eps)

    def entry_points(**params: Any) -> EntryPoints:
        return installed.select(**params)

    monkeypatch.setattr(replay_mod, "entry_points", entry_points)


async def test_only_the_venue_the_files_need_is_loaded(
    redis: aioredis.Redis, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a half-built feed elsewhere in the workspace must not stop the replay of another venue
    entry_points_of(
        monkeypatch, ("mt5", "of_feed_mt5.not_built_yet:VENUE"), ("test", f"{__name__}:TEST_VENUE")
    )
    stats = await replay(redis, record(tmp_path, market(5)), registry=registry)
    assert stats.added == 5


def test_a_missing_venue_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    entry_points_of(monkeypatch, ("bybit", "of_feed_bybit.venue:VENUE"))
    with pytest.raises(ReplayError) as err:
        replay_mod.load_venue("kraken")
    assert str(err.value) == (
        "no venue 'kraken' is installed (installed: bybit;"
        " venues register under the 'ofx.venues' entry-point group)"
    )


def test_a_broken_venue_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    entry_points_of(
        monkeypatch, ("mt5", "of_feed_mt5.not_built_yet:VENUE"), ("odd", "ofcommon.keys:PREFIX")
    )
    with pytest.raises(
        ReplayError,
        match=r"^venue 'mt5' \(of_feed_mt5.not_built_yet:VENUE\)"
        r" cannot be loaded: ModuleNotFoundError: No module named",
    ):
        replay_mod.load_venue("mt5")
    with pytest.raises(ReplayError, match=r"^venue 'odd' .* is not an ofcommon.venue.Venue$"):
        replay_mod.load_venue("odd")


async def test_bad_files_fail_before_anything_is_written(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    good = record(tmp_path / "good", market(3))
    wrong_category = record(tmp_path / "linear", market(3), category="linear")
    renamed = tmp_path / "capture.gz"
    renamed.write_bytes(good[0].read_bytes())
    cases = [
        ([*good, *wrong_category], r"venue 'test' has no category 'linear' \(it has: spot\)"),
        ([*good, renamed], r"capture.gz: not a recording name"),
        ([*good, tmp_path / "test-spot-20241201T000000Z.gz"], r"no such recording file"),
        ([], r"no recording files given"),
    ]
    for paths, message in cases:
        with pytest.raises(ReplayError, match=message):
            await replay(redis, paths, registry=registry)
    with pytest.raises(ValueError, match="speed must be a positive number"):
        await replay(redis, good, registry=registry, speed=0)
    assert await redis.dbsize() == 0


async def test_connections_merge_in_receive_time_order_whatever_the_file_order(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    a = [trade(T0 + i * 20 * MS, "BTCUSDT", i) for i in range(30)]  # 0 … 580 ms
    b = [trade(T0 + 410 * MS + i * 20 * MS, "BTCUSDT", 100 + i) for i in range(20)]
    b.append(trade(T0 + 500 * MS, "BTCUSDT", 999))  # the same receive time as a frame of a
    b.sort()
    parts_a = record(tmp_path, a, rotate_bytes=400)  # rotated: parts must stay in order
    parts_b = record(tmp_path, b)  # starts a second later: its own connection (file name)
    assert len(parts_a) > 2
    assert parts_b[0].name == "test-spot-20241201T000001Z.gz"
    shuffled = [*parts_b, *reversed(parts_a)]
    await replay(redis, shuffled, registry=registry)
    got = [(t.ts_recv, t.trade_id) for t in await trades(redis, TRADES)]
    # equal receive times: connections in name order, so a's frame comes first
    expected = sorted(
        [(r, str(json.loads(f)["i"]), 0) for r, f in a]
        + [(r, str(json.loads(f)["i"]), 1) for r, f in b]
    )
    assert got == [(r, i) for r, i, _ in expected]


# --- pacing ------------------------------------------------------------------------------------


async def test_speed_ten_takes_about_a_tenth_of_the_recorded_span(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    paths = record(tmp_path, market())  # 1.95 s of receive time
    started = time.monotonic()
    stats = await replay(redis, paths, registry=registry, speed=10)
    elapsed = time.monotonic() - started
    assert stats.span_s == pytest.approx(1.95)
    # a lower bound only: a slow machine may take longer, never a faster clock
    assert elapsed >= stats.duration_s >= 0.8 * stats.span_s / 10
    assert stats.added == 40


async def test_stop_ends_a_paced_replay_early_with_what_was_due_published(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    paths = record(tmp_path, market(40, step_ms=1000))  # 39 s of receive time in real time
    stop = asyncio.Event()
    task = asyncio.create_task(replay(redis, paths, registry=registry, speed=1, stop=stop))
    await asyncio.sleep(1.5)
    stop.set()
    stats = await asyncio.wait_for(task, 10)
    assert 1 <= stats.frames < 40
    assert stats.added == stats.frames  # every frame handled was published


# --- loop --------------------------------------------------------------------------------------


async def loop_until(
    redis: aioredis.Redis,
    paths: list[Path],
    registry: Registry,
    stream: str,
    entries: int,
    **kw: Any,
) -> ReplayStats:
    stop = asyncio.Event()
    task = asyncio.create_task(replay(redis, paths, registry=registry, loop=True, stop=stop, **kw))
    while not task.done():
        if await redis.xlen(stream) >= entries:
            break
        await asyncio.sleep(0.005)
    stop.set()
    return await asyncio.wait_for(task, 30)


def passes(msgs: list[Message]) -> list[list[Message]]:
    """Split a stream at the loop's Gap markers; pass k > 0 starts with its Gap."""
    out: list[list[Message]] = [[]]
    for m in msgs:
        if isinstance(m, Gap) and m.reason.startswith("replay loop:"):
            out.append([])
        out[-1].append(m)
    return out


@pytest.mark.parametrize("ids", ["auto", "derived"])
async def test_loop_shifts_every_pass_so_event_time_keeps_increasing(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path, ids: Any
) -> None:
    frames = market()
    paths = record(tmp_path, frames)
    stats = await loop_until(redis, paths, registry, TRADES, 4 * 17, ids=ids)
    assert stats.passes >= 4
    assert stats.duplicates == 0  # derived IDs keep growing too: nothing refused
    msgs = await messages(redis, TRADES)
    runs = passes(msgs)
    first = runs[0]
    assert len(first) == 16
    period = shift_period(T0 - 3 * MS, frames[-1][0])
    assert period == MINUTE  # whole minutes, longer than the 1.95 s of data
    for k, run in enumerate(runs[1:], 1):
        gap, *rest = run
        assert gap == Gap(
            T0 - 3 * MS + k * period,
            T0 - 3 * MS + k * period,
            "trades",
            f"replay loop: pass {k} restarts the recording",
        )
        for shifted, original in zip(rest, first, strict=False):  # the last pass may be cut
            assert isinstance(original, Trade)
            assert shifted == msgspec.structs.replace(
                original,
                ts_event=original.ts_event + k * period,
                ts_recv=original.ts_recv + k * period,
                trade_id=f"{original.trade_id}~{k}",  # analytics drops trade ids it has seen
            )
    stamps = [m.ts_event for m in msgs]
    assert stamps == sorted(stamps)
    for earlier, later in itertools.pairwise(runs):
        assert max(m.ts_event for m in earlier) < min(m.ts_event for m in later)
    trade_ids = [m.trade_id for m in msgs if isinstance(m, Trade)]
    assert len(trade_ids) == len(set(trade_ids))
    if ids == "derived":
        entry_ids = [i for i, _ in await redis.xrange(TRADES)]
        assert entry_ids == sorted(entry_ids, key=lambda i: tuple(map(int, i.split(b"-"))))


async def test_loop_ends_when_a_pass_publishes_nothing(
    redis: aioredis.Redis, venues: None, registry: Registry, tmp_path: Path
) -> None:
    paths = record(tmp_path, [(T0, b"garbage"), (T0 + MS, b"ping")])
    stats = await asyncio.wait_for(replay(redis, paths, registry=registry, loop=True), 10)
    assert (stats.passes, stats.bad_frames) == (1, 1)


# --- the real Bybit parser over real frames ----------------------------------------------------


@pytest.fixture
def xrp_registry() -> Registry:
    return Registry([*default_instruments(), XRPUSDT])


@pytest.fixture
def bybit_recording(tmp_path: Path) -> list[Path]:
    return record(tmp_path / "bybit", bybit_frames(), venue="bybit", category="linear")


XRP_BOOK = keys.stream("XRPUSDT", "book")


@needs_bybit_data
async def test_bybit_recording_replays_identically_twice(
    redis: aioredis.Redis, venues: None, xrp_registry: Registry, bybit_recording: list[Path]
) -> None:
    stats = await replay(redis, bybit_recording, registry=xrp_registry)
    assert (stats.frames, stats.messages, stats.bad_frames) == (50, {"book": 50}, 0)
    first = await dump(redis)
    await redis.flushdb()
    await replay(redis, bybit_recording, registry=xrp_registry)
    assert payloads(first) == payloads(await dump(redis))
    book = await messages(redis, XRP_BOOK)
    assert isinstance(book[0], BookSnapshot)
    assert (len(book[0].bids), len(book[0].asks), book[0].seq) == (500, 500, 20254869)
    assert all(isinstance(m, BookDelta) for m in book[1:])
    assert [m.seq for m in book] == list(range(20254869, 20254919))


@needs_bybit_data
async def test_bybit_derived_replay_twice_writes_nothing_new(
    redis: aioredis.Redis, venues: None, xrp_registry: Registry, bybit_recording: list[Path]
) -> None:
    first = await replay(redis, bybit_recording, registry=xrp_registry, ids="derived")
    before = await dump(redis)
    second = await replay(redis, bybit_recording, registry=xrp_registry, ids="derived")
    assert (first.added, second.added, second.duplicates) == (50, 0, 50)
    assert await dump(redis) == before
    ids = [i for i, _ in before[XRP_BOOK]]
    assert ids[0] == "1733011200691-0"  # the snapshot's receive ms (its Bybit ts here)


@needs_bybit_data
async def test_bybit_bad_frames_are_dead_lettered_and_the_book_goes_on(
    redis: aioredis.Redis, venues: None, xrp_registry: Registry, tmp_path: Path
) -> None:
    frames = bybit_frames()
    cut = frames[10][1][:200]  # a frame cut short
    frames[10:10] = [(frames[9][0] + 1, b"garbage"), (frames[9][0] + 2, cut)]
    paths = record(tmp_path, frames, venue="bybit", category="linear")
    stats = await replay(redis, paths, registry=xrp_registry)
    assert (stats.frames, stats.bad_frames, stats.messages) == (52, 2, {"book": 50})
    dead = await redis.xrange(keys.dead_letters(None))
    assert [f[codec.FIELD] for _, f in dead] == [b"garbage", cut]
    assert all(f[b"reason"].startswith(b"malformed: not JSON") for _, f in dead)
    book = await messages(redis, XRP_BOOK)
    assert not any(isinstance(m, Gap) for m in book)  # the sequence was never broken


@needs_bybit_data
async def test_bybit_loop_restarts_the_book_each_pass_later_in_time(
    redis: aioredis.Redis, venues: None, xrp_registry: Registry, bybit_recording: list[Path]
) -> None:
    stats = await loop_until(redis, bybit_recording, xrp_registry, XRP_BOOK, 3 * 51)
    assert stats.passes >= 3
    runs = passes(await messages(redis, XRP_BOOK))
    for k, run in enumerate(runs[1:3], 1):
        gap, snapshot, *_ = run
        assert isinstance(gap, Gap)
        assert gap.stream == "book"
        assert isinstance(snapshot, BookSnapshot)  # a fresh parser: the book starts over
        assert snapshot.ts_event == runs[0][0].ts_event + k * MINUTE
    stamps = [m.ts_event for run in runs for m in run]
    assert stamps == sorted(stamps)


# --- the ofx command line ----------------------------------------------------------------------

OFX = (
    "import sys; from tests.integration.test_replay import install; install();"
    " from ofcommon.cli import main; sys.exit(main(sys.argv[1:]))"
)


def ofx(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``ofx`` as a subprocess, with the test venues installed before the real command line."""
    return subprocess.run(
        [sys.executable, "-c", OFX, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def final_stats(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr
    stats: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return stats


@pytest.mark.e2e
def test_ofx_replay_publishes_and_prints_progress_and_stats(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    frames = [*market(), (T0 + 3 * MS, b"garbage")]
    (path,) = record(tmp_path, frames)
    first = ofx(service_env, "replay", str(path), "--ids", "derived")
    stats = final_stats(first)
    assert "replay: pass 1 frames=" in first.stderr
    assert (stats["frames"], stats["added"], stats["bad_frames"]) == (41, 40, 1)
    assert stats["messages"] == {"book": 8, "trades": 32}
    client = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    try:
        assert client.xlen(TRADES) == 16
        assert client.xlen(keys.dead_letters(None)) == 1
    finally:
        client.close()
    again = ofx(service_env, "replay", str(path), "--ids", "derived", "--speed", "max")
    stats = final_stats(again)
    assert (stats["added"], stats["duplicates"]) == (0, 41)
    assert "41 entries were refused as already written" in again.stderr


@pytest.mark.e2e
def test_ofx_replay_loop_stops_cleanly_on_sigint(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    paths = record(tmp_path, market())
    proc = subprocess.Popen(
        [sys.executable, "-c", OFX, "replay", str(paths[0]), "--loop"],
        env=service_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    try:
        wait_for(lambda: client.xlen(TRADES) >= 3 * 17, 30, "three passes")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["passes"] >= 3
    assert stats["added"] == sum(stats["messages"].values())


@pytest.mark.e2e
def test_ofx_replay_and_record_reject_bad_arguments_clearly(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    (path,) = record(tmp_path, market(3))
    cases = [
        (["replay", str(path), "--speed", "0"], "speed must be a positive number or max"),
        (["replay", str(path), "--speed", "fast"], "not a speed: 'fast'"),
        (["replay", str(path), "--ids", "random"], "invalid choice: 'random'"),
        (["replay", str(tmp_path / "nosuch-spot-20241201T000000Z.gz")], "no such recording file"),
        (
            ["record", "--venue", "test", "--category", "spot", "--out", str(tmp_path)],
            "record: venue 'test' cannot record (it has no recorder yet)",
        ),
        (
            ["record", "--venue", "test", "--category", "linear", "--out", str(tmp_path)],
            "record: venue 'test' has no category 'linear' (spot)",
        ),
        (
            ["record", "--venue", "kraken", "--category", "spot", "--out", str(tmp_path)],
            "record: no venue 'kraken' is installed",
        ),
    ]
    for args, message in cases:
        out = ofx(service_env, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)


def test_ofx_record_runs_the_venues_recorder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[RecordOptions] = []

    async def recorder(options: RecordOptions, stop: asyncio.Event) -> list[Path]:
        seen.append(options)
        with RecordingWriter(options.out_dir, "test", options.category) as writer:
            writer.write(T0, b"ping")
        return writer.paths

    venue = Venue(name="test", categories=("spot",), parser=JsonParser, record=recorder)
    monkeypatch.setattr(replay_mod, "load_venue", lambda name: venue)
    monkeypatch.setattr(logs, "configure", lambda *a, **kw: None)  # keep pytest's log handlers
    out_dir = tmp_path / "rec"
    rc = cli.main(
        [
            "record",
            "--venue",
            "test",
            "--category",
            "spot",
            "--out",
            str(out_dir),
            "--duration",
            "2.5",
        ]
    )
    assert rc == 0
    (options,) = seen
    assert (options.category, options.out_dir, options.duration_s) == ("spot", out_dir, 2.5)
    assert "BTCUSDT" in options.registry
    (path,) = out_dir.iterdir()
    assert capsys.readouterr().out.splitlines() == [str(path)]
    assert list(read_recording(path)) == [(T0, b"ping")]


@pytest.mark.e2e
@needs_bybit_data
def test_ofx_replay_of_real_bybit_frames_at_ten_times_speed(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    paths = record(tmp_path, bybit_frames(), venue="bybit", category="linear")
    instruments = tmp_path / "instruments.toml"
    instruments.write_text(XRPUSDT_TOML)
    env = {**service_env, "OF_REGISTRY_FILE": str(instruments)}
    started = time.monotonic()
    stats = final_stats(ofx(env, "replay", *map(str, paths), "--speed", "10"))
    elapsed = time.monotonic() - started
    assert stats["messages"] == {"book": 50}
    assert stats["span_s"] == pytest.approx(4.799)  # the archive's 00:00:00.691 … 00:00:05.490
    assert elapsed >= stats["duration_s"] >= 0.8 * stats["span_s"] / 10  # a lower bound only
