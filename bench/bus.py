"""The bus (``ofcommon.bus`` / ``ofcommon.checkpoint``) against plain redis-py on one Redis server.

    uv run python -m bench.bus [--redis-url URL] [--n N] [--out docs/benchmarks.md]

Cases, each on fresh streams (or fresh consumer groups on one pre-filled stream), bus and raw runs
interleaved, best and median of ``--repeat`` runs:
  1. produce, one awaited round trip per message: ``Producer.publish`` vs ``r.xadd``;
  2. produce, batched: ``Producer.add`` x B + ``flush`` vs a ``pipeline(transaction=False)`` of B
     XADD MAXLEN ~ (B = 100, 1000);
  3. consume, batched: ``GroupReader.read`` + ``ack`` (COUNT 1000) vs ``xreadgroup`` COUNT 1000 +
     msgspec decode + one ``xack`` per batch; also without the first batch (``consume_batched``);
  4. fenced read: ``Fence.read`` (Lua-fenced XREADGROUP) COUNT 1000 + decode vs ``xreadgroup`` +
     decode; the checkpoint (``Fence.checkpoint`` acking every read entry) vs XACK of 1000 IDs per
     call; and the stage's cadence (fenced read + checkpoint every 5000 entries) vs case 3's raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

import ofcommon.bus
from bench import harness
from bench.harness import Samples, fmt_rate, log
from ofcommon import codec, keys, retention
from ofcommon.bus import GroupReader, Producer, decode_fields
from ofcommon.checkpoint import SNAPSHOT_VERSION, Fence, Snapshot
from ofcommon.messages import Message, Side, Trade

HEADING: Final = "## Bus (issue 2)"
T0: Final = 1_723_075_200_000_000_000  # 2024-08-08T00:00:00Z in ns
MAXLEN: Final = retention.for_kind("trades").maxlen
READ_COUNT: Final = 1000
ACK_CHUNK: Final = 1000
STAGE_CHECKPOINT_EVERY: Final = 5000  # StageTiming.checkpoint_every
STATE: Final = bytes(1024)  # stands in for a fold's state in each snapshot
LEASE_VALUE: Final = "w:1"
STAGE: Final = "bench"

MEASURED: Final = [
    f"libs/ofcommon/src/ofcommon/{m}.py"
    for m in ("bus", "checkpoint", "codec", "messages", "stage", "keys", "retention", "metrics")
]

# measurement name -> (seconds, messages) of one run
Timings = dict[str, tuple[float, int]]
Variant = Callable[[aioredis.Redis, str, int], Awaitable[Timings]]


# what the stage calls on each fenced entry, if the library has it (it takes every shape that
# Fence.read returns for an entry); older code turned a flat field list into a dict first
_decode_value: Any = getattr(ofcommon.bus, "decode_value", None)


def stage_decode(value: Any) -> Message | None:
    """What ``stage.InstrumentWorker._process`` does with one fenced entry before the fold."""
    if _decode_value is not None:
        return cast("Message | None", _decode_value(value)[0])
    if isinstance(value, list):  # the flat field list of a Lua reply, as stage._pairs did
        value = dict(zip(value[::2], value[1::2], strict=True)) if value else None
    return decode_fields(value)[0]


def make_trades(n: int) -> list[Trade]:
    return [
        Trade(
            T0 + i * 1_000_000,
            T0 + i * 1_000_000 + 1_500_000,
            61234.5 + (i % 200) * 0.5,
            0.001 * (1 + i % 50),
            Side.BUY if i % 2 else Side.SELL,
            f"{i}",
            seq=1_000_000 + i,
        )
        for i in range(n)
    ]


@dataclass
class Data:
    trades: list[Trade]
    payloads: list[bytes]  # codec.encode of each trade, for the raw baselines


# --- 1. produce, one awaited round trip per message -----------------------------------------


def produce_single(data: Data) -> dict[str, Variant]:
    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        producer = Producer(r, service="bench")
        trades = data.trades[:n]
        t0 = time.perf_counter()
        for trade in trades:
            await producer.publish(stream, trade)
        return {"produce": (time.perf_counter() - t0, n)}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        payloads = data.payloads[:n]
        t0 = time.perf_counter()
        for payload in payloads:
            await r.xadd(stream, {codec.FIELD: payload}, maxlen=MAXLEN, approximate=True)
        return {"produce": (time.perf_counter() - t0, n)}

    async def raw_encoding(r: aioredis.Redis, stream: str, n: int) -> Timings:
        encoder = msgspec.msgpack.Encoder()
        trades = data.trades[:n]
        t0 = time.perf_counter()
        for trade in trades:
            await r.xadd(
                stream, {codec.FIELD: encoder.encode(trade)}, maxlen=MAXLEN, approximate=True
            )
        return {"produce": (time.perf_counter() - t0, n)}

    return {"bus": bus, "raw": raw, "raw+encode": raw_encoding}


# --- 2. produce, batched --------------------------------------------------------------------


def produce_batched(data: Data, batch: int) -> dict[str, Variant]:
    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        producer = Producer(r, service="bench")
        chunks = [data.trades[i : i + batch] for i in range(0, n, batch)]
        t0 = time.perf_counter()
        for chunk in chunks:
            for trade in chunk:
                producer.add(stream, trade)
            await producer.flush()
        return {"produce": (time.perf_counter() - t0, n)}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        chunks = [data.payloads[i : i + batch] for i in range(0, n, batch)]
        t0 = time.perf_counter()
        for chunk in chunks:
            pipe = r.pipeline(transaction=False)
            for payload in chunk:
                pipe.xadd(stream, {codec.FIELD: payload}, maxlen=MAXLEN, approximate=True)
            await pipe.execute()
        return {"produce": (time.perf_counter() - t0, n)}

    return {"bus": bus, "raw": raw}


# --- 3. consume, batched --------------------------------------------------------------------


def consume_batched() -> dict[str, Variant]:
    """GroupReader vs raw. The bus's first ``read()`` also reads its own pending list, exports the
    group's lag and runs XAUTOCLAIM (as every ``claim_idle_ms / 4`` after); "steady" leaves that
    first call and its batch out, on both sides."""
    runs = 0

    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        nonlocal runs
        runs += 1
        group = f"bus{runs}"
        reader = GroupReader(r, [stream], group, "c1", service="bench", count=READ_COUNT)
        await reader.start()
        got = 0
        t0 = time.perf_counter()
        entries = await reader.read()
        await reader.ack(entries)
        got = first = len(entries)
        t1 = time.perf_counter()
        while got < n:
            entries = await reader.read()
            await reader.ack(entries)
            got += len(entries)
        t2 = time.perf_counter()
        assert got == n, (got, n)
        await r.xgroup_destroy(stream, group)
        return {"consume": (t2 - t0, n), "steady": (t2 - t1, n - first), "first": (t1 - t0, first)}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        nonlocal runs
        runs += 1
        group = f"raw{runs}"
        decoder = msgspec.msgpack.Decoder(Trade)
        await r.xgroup_create(stream, group, id="0")
        t0 = time.perf_counter()
        got = first = await raw_read_decode_ack(r, stream, group, decoder)
        t1 = time.perf_counter()
        while got < n:
            got += await raw_read_decode_ack(r, stream, group, decoder)
        t2 = time.perf_counter()
        assert got == n, (got, n)
        await r.xgroup_destroy(stream, group)
        return {"consume": (t2 - t0, n), "steady": (t2 - t1, n - first), "first": (t1 - t0, first)}

    return {"bus": bus, "raw": raw}


async def raw_read_decode_ack(
    r: aioredis.Redis, stream: str, group: str, decoder: msgspec.msgpack.Decoder[Trade]
) -> int:
    reply: Any = await r.xreadgroup(group, "c1", {stream: ">"}, count=READ_COUNT)
    msgs: list[Trade] = []
    ids: list[bytes] = []
    for _, entries in reply:
        for entry_id, fields in entries:
            msgs.append(decoder.decode(fields[codec.FIELD]))
            ids.append(entry_id)
    if ids:
        await r.xack(stream, group, *ids)
    return len(msgs)


# --- 4. fenced read, checkpoint, stage cadence ----------------------------------------------


def snapshot(stream: str, last_id: str, entries: int) -> Snapshot:
    return Snapshot(
        version=SNAPSHOT_VERSION,
        positions={stream: last_id},
        last_out={},
        state=STATE,
        entries=entries,
    )


def fenced(symbol: str) -> dict[str, Variant]:
    def fence(r: aioredis.Redis, stream: str) -> Fence:
        return Fence(r, symbol=symbol, stage=STAGE, streams=[stream], lease_value=LEASE_VALUE)

    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        f = fence(r, stream)
        await fresh_group(r, stream, STAGE)
        cursors = {stream: ">"}
        msgs: list[Message | None] = []
        last_id = "0-0"
        t0 = time.perf_counter()
        while len(msgs) < n:
            batch = await f.read(cursors, READ_COUNT)
            for _, entry_id, fields in batch:
                msg = stage_decode(fields)
                msgs.append(msg)
                last_id = entry_id
        t1 = time.perf_counter()
        acked = await f.checkpoint(snapshot(stream, last_id, len(msgs)))
        t2 = time.perf_counter()
        assert len(msgs) == n, (len(msgs), n)
        assert acked == n, (acked, n)
        assert all(m is not None for m in msgs)
        return {"read": (t1 - t0, n), "checkpoint": (t2 - t1, n)}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        group = "raw"
        decoder = msgspec.msgpack.Decoder(Trade)
        await fresh_group(r, stream, group)
        msgs: list[Trade] = []
        ids: list[bytes] = []
        t0 = time.perf_counter()
        while len(msgs) < n:
            reply: Any = await r.xreadgroup(group, symbol, {stream: ">"}, count=READ_COUNT)
            for _, entries in reply:
                for entry_id, fields in entries:
                    msgs.append(decoder.decode(fields[codec.FIELD]))
                    ids.append(entry_id)
        t1 = time.perf_counter()
        acked = 0
        for i in range(0, len(ids), ACK_CHUNK):
            acked += await r.xack(stream, group, *ids[i : i + ACK_CHUNK])
        t2 = time.perf_counter()
        assert len(msgs) == n, (len(msgs), n)
        assert acked == n, (acked, n)
        return {"read": (t1 - t0, n), "checkpoint": (t2 - t1, n)}

    return {"bus": bus, "raw": raw}


def stage_cadence(symbol: str) -> dict[str, Variant]:
    async def bus_stage(r: aioredis.Redis, stream: str, n: int) -> Timings:
        f = Fence(r, symbol=symbol, stage=STAGE, streams=[stream], lease_value=LEASE_VALUE)
        await fresh_group(r, stream, STAGE)
        cursors = {stream: ">"}
        got = since = acked = 0
        last_id = "0-0"
        t0 = time.perf_counter()
        while got < n:
            batch = await f.read(cursors, READ_COUNT)
            msgs: list[Message | None] = []
            for _, entry_id, fields in batch:
                msg = stage_decode(fields)
                msgs.append(msg)
                last_id = entry_id
            got += len(msgs)
            since += len(msgs)
            if since >= STAGE_CHECKPOINT_EVERY or got >= n:
                acked += await f.checkpoint(snapshot(stream, last_id, got))
                since = 0
        elapsed = time.perf_counter() - t0
        assert got == n, (got, n)
        assert acked == n, (acked, n)
        return {"stage": (elapsed, n)}

    async def raw_stage(r: aioredis.Redis, stream: str, n: int) -> Timings:
        group = "rawstage"
        decoder = msgspec.msgpack.Decoder(Trade)
        await fresh_group(r, stream, group)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            got += await raw_read_decode_ack(r, stream, group, decoder)
        elapsed = time.perf_counter() - t0
        assert got == n, (got, n)
        return {"stage": (elapsed, n)}

    return {"bus-stage": bus_stage, "raw-stage": raw_stage}


async def fill(r: aioredis.Redis, stream: str, payloads: list[bytes]) -> None:
    for i in range(0, len(payloads), 1000):
        pipe = r.pipeline(transaction=False)
        for payload in payloads[i : i + 1000]:
            pipe.xadd(stream, {codec.FIELD: payload}, maxlen=MAXLEN, approximate=True)
        await pipe.execute()


async def fresh_group(r: aioredis.Redis, stream: str, group: str) -> None:
    with contextlib.suppress(ResponseError):
        await r.xgroup_destroy(stream, group)
    await r.xgroup_create(stream, group, id="0")


# --- running ---------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    bus: Samples
    raw: Samples


@dataclass
class Case:
    name: str  # short; in stream names and for --only
    n: int
    variants: dict[str, Variant]
    rows: list[tuple[str, str, tuple[str, str], tuple[str, str]]]  # key, label, (variant, what) x2
    prefilled: bool = False  # one stream filled up front, re-read by every run in a fresh group


async def run_case(
    r: aioredis.Redis, case: Case, data: Data, repeat: int
) -> dict[tuple[str, str], Samples]:
    samples: dict[tuple[str, str], Samples] = {}
    symbol = f"BENCH-{case.name}"
    shared = keys.stream(symbol, "trades")
    if case.prefilled:
        await r.delete(shared)
        t0 = time.perf_counter()
        await fill(r, shared, data.payloads[: case.n])
        log(f"  filled {shared} with {case.n:,} entries in {time.perf_counter() - t0:.1f}s")
        await r.set(keys.lease(symbol, STAGE), LEASE_VALUE)
    names = list(case.variants)
    for rep in range(repeat):
        # rotate the order so that no side always runs first (warm-up, drift)
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            stream = (
                shared
                if case.prefilled
                else keys.stream(f"{symbol}-{rep}-{name.replace('+', '_')}", "trades")
            )
            if not case.prefilled:
                await r.delete(stream)
            harness.settle()
            timings = await case.variants[name](r, stream, case.n)
            if not case.prefilled:
                length = await r.xlen(stream)
                assert length == case.n, (stream, length, case.n)
                await r.delete(stream)
            for what, (seconds, count) in timings.items():
                samples.setdefault((name, what), Samples()).add(seconds, count)
            shown = ", ".join(f"{what} {c / s:,.0f}/s" for what, (s, c) in timings.items())
            log(f"  {case.name} #{rep + 1} {name}: {shown}")
    if case.prefilled:
        await r.delete(shared, keys.lease(symbol, STAGE))
    return samples


def build_cases(data: Data, n: int, n_single: int) -> list[Case]:
    return [
        Case(
            "single",
            n_single,
            produce_single(data),
            [
                (
                    "single",
                    "produce, 1 awaited round trip per msg (`publish` vs `xadd`)",
                    ("bus", "produce"),
                    ("raw", "produce"),
                ),
                (
                    "single-enc",
                    "same, raw also encodes in the loop",
                    ("bus", "produce"),
                    ("raw+encode", "produce"),
                ),
            ],
        ),
        *(
            Case(
                f"batch{b}",
                n,
                produce_batched(data, b),
                [
                    (
                        f"batch{b}",
                        f"produce, batch of {b:,} (`add` × {b:,} + `flush` vs one pipeline)",
                        ("bus", "produce"),
                        ("raw", "produce"),
                    )
                ],
            )
            for b in (100, 1000)
        ),
        Case(
            "consume",
            n,
            consume_batched(),
            [
                (
                    "consume",
                    f"consume, COUNT {READ_COUNT:,} + decode + XACK per batch",
                    ("bus", "consume"),
                    ("raw", "consume"),
                ),
                (
                    "consume-first",
                    "",  # not tabled: the first read() alone, quoted in the reading
                    ("bus", "first"),
                    ("raw", "first"),
                ),
                (
                    "consume-steady",
                    "same, without the first `read()` (own pending, lag metric, XAUTOCLAIM)",
                    ("bus", "steady"),
                    ("raw", "steady"),
                ),
            ],
            prefilled=True,
        ),
        Case(
            "fence",
            n,
            {**fenced("BENCH-fence"), **stage_cadence("BENCH-fence")},
            [
                (
                    "fence-read",
                    f"fenced read (`Fence.read`, Lua), COUNT {READ_COUNT:,} + decode",
                    ("bus", "read"),
                    ("raw", "read"),
                ),
                (
                    "checkpoint",
                    f"checkpoint acking {n:,} entries in one call"
                    f" (raw: XACK {ACK_CHUNK:,} IDs per call)",
                    ("bus", "checkpoint"),
                    ("raw", "checkpoint"),
                ),
                (
                    "stage",
                    f"stage cadence: fenced read + checkpoint every {STAGE_CHECKPOINT_EVERY:,}"
                    " (raw: as consume)",
                    ("bus-stage", "stage"),
                    ("raw-stage", "stage"),
                ),
            ],
            prefilled=True,
        ),
    ]


def overhead(row: Row) -> float:
    """Extra time per message over raw, in % (best runs)."""
    return (row.raw.best / row.bus.best - 1) * 100


def extra_us(row: Row) -> float:
    """Extra client time per message over raw, µs (best runs)."""
    return (1 / row.bus.best - 1 / row.raw.best) * 1e6


def table(rows: list[Row]) -> str:
    lines = [
        "| case | bus msgs/s | raw msgs/s | ratio | overhead % | µs/msg extra"
        " | median bus / raw msgs/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {row.label} | {fmt_rate(row.bus.best)} | {fmt_rate(row.raw.best)}"
        f" | {row.bus.best / row.raw.best:.2f} | {overhead(row):+.0f}% | {extra_us(row):+.2f}"
        f" | {fmt_rate(row.bus.median)} / {fmt_rate(row.raw.median)} |"
        for row in rows
        if row.label
    )
    return "\n".join(lines)


def reading(rows: dict[str, Row], n: int, digest: str) -> str:
    def pct(key: str) -> str:
        return f"{overhead(rows[key]):+.0f}%"

    def us(key: str) -> str:
        return f"{extra_us(rows[key]):+.1f} µs"

    compared = [r for r in rows.values() if r.label and r.key != "checkpoint"]
    over = [f"{r.key} {overhead(r):+.0f}%" for r in compared if overhead(r) > 20]
    verdict = (
        f"All {len(compared)} compared rows are within the 20% target."
        if not over
        else f"Above the 20% target: {', '.join(over)}."
    )
    ckpt = rows["checkpoint"]
    first = rows["consume-first"]
    numbers = NUMBERS.format(
        verdict=verdict,
        n=f"{n:,}",
        single=pct("single"),
        b100=pct("batch100"),
        b1000=pct("batch1000"),
        b1000_us=us("batch1000"),
        consume=pct("consume"),
        steady=pct("consume-steady"),
        steady_us=us("consume-steady"),
        first_ms=f"{first.bus.fastest * 1000:.0f}",
        first_raw_ms=f"{first.raw.fastest * 1000:.1f}",
        fence=pct("fence-read"),
        fence_us=us("fence-read"),
        ckpt_bus=fmt_rate(ckpt.bus.best),
        ckpt_raw=fmt_rate(ckpt.raw.best),
        ckpt_ms=f"{n / ckpt.bus.best * 1000:.0f}",
        stage=pct("stage"),
    )
    return harness.reading(numbers, WHERE, digest=digest, profiled=PROFILED_DIGEST)


# harness.code_digest(MEASURED) of the code that WHERE below was profiled on
PROFILED_DIGEST: Final = "d7e490c95ffb"

NUMBERS = """
**Reading.** {verdict} Batched produce costs {b100} at B=100 and {b1000} at B=1,000
({b1000_us}/msg); `publish`, one message per round trip, {single}. Consume costs {consume}
overall and {steady} ({steady_us}/msg) without the first `read()`, which took {first_ms} ms
against {first_raw_ms} ms for the raw loop's first batch. The fenced read costs {fence}
({fence_us}/msg). A checkpoint acks {ckpt_bus} entries/s in one Lua call ({ckpt_ms} ms of
blocked Redis for {n} entries) against {ckpt_raw}/s for XACK of 1,000 IDs per call; at the
stage's cadence (a checkpoint every 5,000 entries) fenced consumption costs {stage} over the
stateless raw loop.
"""

WHERE = """
Where the time goes (cProfile, Redis commandstats and micro-benchmarks on the code with digest
{profiled}): batched produce sends the same commands in the same round trips as raw and, with each
stream's key, MAXLEN and kind worked out once, only adds msgpack encoding (≈0.2 µs per entry) and
the result loop. `publish` still goes through `flush`: a one-command pipeline per message (pipeline
object, more awaits). Consume pays per entry for IDs decoded to `str` that redis-py re-encodes on
its slow `str` path for XACK (≈0.45 µs), and for the `_flatten` list, `decode_fields` and an `Entry`
built through `NamedTuple.__new__` (≈0.5 µs together); its first `read()` exports the lag metric,
which a Redis without XINFO GROUPS `lag` (< 7, like the embedded 6.2) counts with XRANGE, capped at
10,000 entries. The fenced read's Lua script returns flat `[id, d, …]` pairs, so the client does
about what raw does, but Redis still turns each XREADGROUP reply into Lua tables and back: ≈2.7 µs
of single-threaded Redis time per entry against ≈1.4 µs for the XREADGROUP alone. The checkpoint
runs XPENDING and XACK per 1,000 entries inside Lua, two server-side passes where a client holding
the IDs needs one XACK. Client, server and any other work share the 2 cores, so single runs vary
(see the load averages and the median column): read the ratios of the best runs and rerun before
trusting a few points.
"""


async def run(args: argparse.Namespace, command: str) -> str:
    n = args.n
    n_single = args.n_single or max(n // 10, 1)
    trades = make_trades(max(n, n_single))
    data = Data(trades, [codec.encode(t) for t in trades])
    with harness.redis_server(args.redis_url) as (url, description):
        r = aioredis.Redis.from_url(url, decode_responses=False)
        try:
            await harness.quiet_embedded(r, description)
            info = await harness.machine_info(r, description, MEASURED)
            log(f"bench.bus on {description}")
            rows: list[Row] = []
            for case in build_cases(data, n, n_single):
                if args.only and case.name not in args.only:
                    continue
                log(f"{case.name}: {case.n:,} messages × {args.repeat} per side")
                samples = await run_case(r, case, data, args.repeat)
                rows.extend(
                    Row(key, label, samples[bus], samples[raw])
                    for key, label, bus, raw in case.rows
                )
            info.append(("load average at end", harness.load_average()))
        finally:
            await r.aclose()
    body = [
        textwrap.fill(
            "`Producer`, `GroupReader` and `Fence` of `ofcommon` against plain redis-py doing the"
            " same Redis work: one asyncio client, one connection, hiredis, a six-field `Trade`"
            " (about 50 bytes of msgpack) per entry. Ratio = bus/raw throughput; overhead = extra"
            f" time per message; best of {args.repeat} runs per side, median beside it;"
            f" {n_single:,} messages per run for the per-message rows, {n:,} for the others.",
            width=100,
            break_long_words=False,
            break_on_hyphens=False,
        ),
        "",
        *(f"- {k}: {v}" for k, v in info),
        f"- command: `{command}`",
        "",
        table(rows),
    ]
    if not args.only:
        body += ["", reading({row.key: row for row in rows}, n, harness.code_digest(MEASURED))]
    return "\n".join(body)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--n", type=int, default=200_000, help="messages per batched run")
    p.add_argument("--n-single", type=int, default=0, help="per-message runs (default n/10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case and side")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    p.add_argument(
        "--only",
        action="append",
        choices=["single", "batch100", "batch1000", "consume", "fence"],
        help="run only this case (repeatable); skips the reading",
    )
    args = p.parse_args(argv)
    if args.only and args.out:
        p.error("--only runs part of the cases: it writes no file (drop --out)")
    return args


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = command or harness.command_line("bench.bus", argv)
    t0 = time.perf_counter()
    body = asyncio.run(run(args, command))
    print(f"{HEADING}\n\n{body}")
    if args.out:
        harness.write_section(args.out, HEADING, body)
        log(f"wrote {HEADING!r} to {args.out}")
    log(f"bench.bus took {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
