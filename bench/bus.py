"""The bus (``ofcommon.bus`` / ``ofcommon.checkpoint``) against plain redis-py on one Redis server.

    uv run python -m bench.bus [--redis-url URL] [--n N] [--out docs/benchmarks.md]

Cases, each on fresh streams, bus and raw runs interleaved, best and median of ``--repeat``:
  1. produce, one awaited round trip per message: ``Producer.publish`` vs ``r.xadd``;
  2. produce, batched: ``Producer.add`` x B + ``flush`` vs a ``pipeline(transaction=False)`` of B
     XADD MAXLEN ~ (B = 100, 1000);
  3. consume, batched: ``GroupReader.read`` + ``ack`` (COUNT 1000) vs ``xreadgroup`` COUNT 1000 +
     msgspec decode + one ``xack`` per batch;
  4. fenced read: ``Fence.read`` (Lua-fenced XREADGROUP) COUNT 1000 + decode vs ``xreadgroup`` +
     decode; the checkpoint (``Fence.checkpoint`` acking every read entry) vs XACK of 1000 IDs per
     call; and the stage's cadence (fenced read + checkpoint every 5000 entries) vs case 3's raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bench import harness
from bench.harness import Samples, fmt_rate, log
from ofcommon import codec, keys, retention
from ofcommon.bus import GroupReader, Producer, decode_fields
from ofcommon.checkpoint import SNAPSHOT_VERSION, Fence, Snapshot
from ofcommon.messages import Side, Trade
from ofcommon.stage import _pairs  # the stage's own field-list -> dict step, measured as is

HEADING: Final = "## Bus (issue 2)"
T0: Final = 1_723_075_200_000_000_000  # 2024-08-08T00:00:00Z in ns
MAXLEN: Final = retention.for_kind("trades").maxlen
READ_COUNT: Final = 1000
ACK_CHUNK: Final = 1000
STAGE_CHECKPOINT_EVERY: Final = 5000  # StageTiming.checkpoint_every
STATE: Final = bytes(1024)  # a stand-in for a fold's state in each snapshot
LEASE_VALUE: Final = "w:1"
STAGE: Final = "bench"


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
    payloads: list[bytes]


Timings = dict[str, float]  # measurement name -> seconds for the whole run
Variant = Callable[[aioredis.Redis, str, int], Awaitable[Timings]]


# --- 1. produce, one awaited round trip per message -----------------------------------------


def produce_single(data: Data) -> dict[str, Variant]:
    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        producer = Producer(r, service="bench")
        trades = data.trades[:n]
        t0 = time.perf_counter()
        for trade in trades:
            await producer.publish(stream, trade)
        return {"produce": time.perf_counter() - t0}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        payloads = data.payloads[:n]
        t0 = time.perf_counter()
        for payload in payloads:
            await r.xadd(stream, {codec.FIELD: payload}, maxlen=MAXLEN, approximate=True)
        return {"produce": time.perf_counter() - t0}

    async def raw_encoding(r: aioredis.Redis, stream: str, n: int) -> Timings:
        encoder = msgspec.msgpack.Encoder()
        trades = data.trades[:n]
        t0 = time.perf_counter()
        for trade in trades:
            await r.xadd(
                stream, {codec.FIELD: encoder.encode(trade)}, maxlen=MAXLEN, approximate=True
            )
        return {"produce": time.perf_counter() - t0}

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
        return {"produce": time.perf_counter() - t0}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        chunks = [data.payloads[i : i + batch] for i in range(0, n, batch)]
        t0 = time.perf_counter()
        for chunk in chunks:
            pipe = r.pipeline(transaction=False)
            for payload in chunk:
                pipe.xadd(stream, {codec.FIELD: payload}, maxlen=MAXLEN, approximate=True)
            await pipe.execute()
        return {"produce": time.perf_counter() - t0}

    return {"bus": bus, "raw": raw}


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


# --- 3. consume, batched --------------------------------------------------------------------


def consume_batched() -> dict[str, Variant]:
    runs = 0

    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        nonlocal runs
        runs += 1
        group = f"bus{runs}"
        reader = GroupReader(r, [stream], group, "c1", service="bench", count=READ_COUNT)
        await reader.start()
        got = 0
        t0 = time.perf_counter()
        while got < n:
            entries = await reader.read()
            await reader.ack(entries)
            got += len(entries)
        elapsed = time.perf_counter() - t0
        assert got == n, (got, n)
        await r.xgroup_destroy(stream, group)
        return {"consume": elapsed}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        nonlocal runs
        runs += 1
        group = f"raw{runs}"
        decoder = msgspec.msgpack.Decoder(Trade)
        await r.xgroup_create(stream, group, id="0")
        got = 0
        t0 = time.perf_counter()
        while got < n:
            got += await raw_read_decode_ack(r, stream, group, decoder)
        elapsed = time.perf_counter() - t0
        assert got == n, (got, n)
        await r.xgroup_destroy(stream, group)
        return {"consume": elapsed}

    return {"bus": bus, "raw": raw}


async def raw_read_decode_ack(
    r: aioredis.Redis, stream: str, group: str, decoder: msgspec.msgpack.Decoder[Trade]
) -> int:
    reply = await r.xreadgroup(group, "c1", {stream: ">"}, count=READ_COUNT)
    msgs = []
    ids = []
    for _, entries in reply:
        for entry_id, fields in entries:
            msgs.append(decoder.decode(fields[codec.FIELD]))
            ids.append(entry_id)
    if ids:
        await r.xack(stream, group, *ids)
    return len(msgs)


# --- 4. fenced read, checkpoint, stage cadence ----------------------------------------------


def fenced(symbol: str) -> dict[str, Variant]:
    def fence(r: aioredis.Redis, stream: str) -> Fence:
        return Fence(r, symbol=symbol, stage=STAGE, streams=[stream], lease_value=LEASE_VALUE)

    def snapshot(stream: str, last_id: str, entries: int) -> Snapshot:
        return Snapshot(
            version=SNAPSHOT_VERSION,
            positions={stream: last_id},
            last_out={},
            state=STATE,
            entries=entries,
        )

    async def bus(r: aioredis.Redis, stream: str, n: int) -> Timings:
        f = fence(r, stream)
        await fresh_group(r, stream, STAGE)
        cursors = {stream: ">"}
        msgs = []
        last_id = "0-0"
        t0 = time.perf_counter()
        while len(msgs) < n:
            batch = await f.read(cursors, READ_COUNT)
            for _, entry_id, fields in batch:
                msg, _, _ = decode_fields(_pairs(fields))
                msgs.append(msg)
                last_id = entry_id
        t1 = time.perf_counter()
        acked = await f.checkpoint(snapshot(stream, last_id, len(msgs)))
        t2 = time.perf_counter()
        assert len(msgs) == n and acked == n and all(m is not None for m in msgs), (acked, n)
        return {"read": t1 - t0, "checkpoint": t2 - t1}

    async def raw(r: aioredis.Redis, stream: str, n: int) -> Timings:
        group = "raw"
        decoder = msgspec.msgpack.Decoder(Trade)
        await fresh_group(r, stream, group)
        msgs = []
        ids = []
        t0 = time.perf_counter()
        while len(msgs) < n:
            reply = await r.xreadgroup(group, symbol, {stream: ">"}, count=READ_COUNT)
            for _, entries in reply:
                for entry_id, fields in entries:
                    msgs.append(decoder.decode(fields[codec.FIELD]))
                    ids.append(entry_id)
        t1 = time.perf_counter()
        acked = 0
        for i in range(0, len(ids), ACK_CHUNK):
            acked += await r.xack(stream, group, *ids[i : i + ACK_CHUNK])
        t2 = time.perf_counter()
        assert len(msgs) == n and acked == n, (acked, n)
        return {"read": t1 - t0, "checkpoint": t2 - t1}

    async def bus_stage(r: aioredis.Redis, stream: str, n: int) -> Timings:
        f = fence(r, stream)
        await fresh_group(r, stream, STAGE)
        cursors = {stream: ">"}
        got = since = acked = 0
        last_id = "0-0"
        t0 = time.perf_counter()
        while got < n:
            batch = await f.read(cursors, READ_COUNT)
            msgs = []
            for _, entry_id, fields in batch:
                msg, _, _ = decode_fields(_pairs(fields))
                msgs.append(msg)
                last_id = entry_id
            got += len(msgs)
            since += len(msgs)
            if since >= STAGE_CHECKPOINT_EVERY or got >= n:
                acked += await f.checkpoint(snapshot(stream, last_id, got))
                since = 0
        elapsed = time.perf_counter() - t0
        assert got == n and acked == n, (got, acked, n)
        return {"stage": elapsed}

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
        return {"stage": elapsed}

    return {"bus": bus, "raw": raw, "bus-stage": bus_stage, "raw-stage": raw_stage}


# --- running ---------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    bus: Samples
    raw: Samples
    note: str = ""


@dataclass
class Case:
    name: str  # short, used in stream names
    n: int
    variants: dict[str, Variant]
    rows: list[tuple[str, tuple[str, str], tuple[str, str]]]  # label, (variant, measurement) x2
    prefilled: bool = False  # one stream filled up front and re-read by every run


async def run_case(
    r: aioredis.Redis, case: Case, data: Data, repeat: int
) -> dict[tuple[str, str], Samples]:
    samples: dict[tuple[str, str], Samples] = {}
    shared = keys.stream(f"BENCH-{case.name}", "trades")
    if case.prefilled:
        await r.delete(shared)
        t0 = time.perf_counter()
        await fill(r, shared, data.payloads[: case.n])
        log(f"  filled {shared} with {case.n:,} entries in {time.perf_counter() - t0:.1f}s")
        await r.set(keys.lease(f"BENCH-{case.name}", STAGE), LEASE_VALUE)
    names = list(case.variants)
    for rep in range(repeat):
        # rotate the order so neither side always runs first (warm-up, drift)
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            stream = shared if case.prefilled else keys.stream(f"BENCH-{case.name}-{rep}", "trades")
            if not case.prefilled:
                await r.delete(stream)
            harness.settle()
            timings = await case.variants[name](r, stream, case.n)
            if not case.prefilled:
                length = await r.xlen(stream)
                assert length == case.n, (stream, length, case.n)
                await r.delete(stream)
            for measurement, seconds in timings.items():
                samples.setdefault((name, measurement), Samples(case.n)).seconds.append(seconds)
            shown = ", ".join(f"{m} {case.n / s:,.0f}/s" for m, s in timings.items())
            log(f"  {case.name} #{rep + 1} {name}: {shown}")
    if case.prefilled:
        await r.delete(shared, keys.lease(f"BENCH-{case.name}", STAGE))
    return samples


def build_cases(data: Data, n: int, n_single: int) -> list[Case]:
    fence_symbol = "BENCH-fence"
    return [
        Case(
            "single",
            n_single,
            produce_single(data),
            [
                ("produce, 1 awaited XADD per msg", ("bus", "produce"), ("raw", "produce")),
                (
                    "produce, 1 awaited XADD per msg, raw encodes in loop",
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
                [(f"produce, batch of {b} (one pipeline)", ("bus", "produce"), ("raw", "produce"))],
            )
            for b in (100, 1000)
        ),
        Case(
            "consume",
            n,
            consume_batched(),
            [
                (
                    f"consume, COUNT {READ_COUNT} + decode + XACK per batch",
                    ("bus", "consume"),
                    ("raw", "consume"),
                )
            ],
            prefilled=True,
        ),
        Case(
            "fence",
            n,
            fenced(fence_symbol),
            [
                (f"fenced read, COUNT {READ_COUNT} + decode", ("bus", "read"), ("raw", "read")),
                (
                    f"checkpoint acking {n:,} entries (raw: XACK {ACK_CHUNK} IDs per call)",
                    ("bus", "checkpoint"),
                    ("raw", "checkpoint"),
                ),
                (
                    f"stage cadence: fenced read + checkpoint every {STAGE_CHECKPOINT_EVERY:,}"
                    " (raw: as consume)",
                    ("bus-stage", "stage"),
                    ("raw-stage", "stage"),
                ),
            ],
            prefilled=True,
        ),
    ]


def table(rows: list[Row]) -> str:
    lines = [
        "| case | bus msgs/s | raw msgs/s | ratio | overhead % | median bus / raw msgs/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = row.bus.best / row.raw.best
        overhead = (row.raw.best / row.bus.best - 1) * 100
        lines.append(
            f"| {row.label} | {fmt_rate(row.bus.best)} | {fmt_rate(row.raw.best)} | {ratio:.2f} "
            f"| {overhead:+.0f}% | {fmt_rate(row.bus.median)} / {fmt_rate(row.raw.median)} |"
        )
    return "\n".join(lines)


def overhead_us(row: Row) -> float:
    """Extra client time per message, µs (best runs)."""
    return (1 / row.bus.best - 1 / row.raw.best) * 1e6


def reading(rows: dict[str, Row], n: int, n_single: int) -> str:
    def pct(key: str) -> str:
        row = rows[key]
        return f"{(row.raw.best / row.bus.best - 1) * 100:+.0f}%"

    def us(key: str) -> str:
        return f"{overhead_us(rows[key]):+.1f} µs"

    return READING.format(
        single=pct("single"),
        single_us=us("single"),
        single_enc=pct("single-enc"),
        b100=pct("batch100"),
        b100_us=us("batch100"),
        b1000=pct("batch1000"),
        b1000_us=us("batch1000"),
        consume=pct("consume"),
        consume_us=us("consume"),
        fence=pct("fence-read"),
        fence_us=us("fence-read"),
        ckpt_bus=fmt_rate(rows["checkpoint"].bus.best),
        ckpt_raw=fmt_rate(rows["checkpoint"].raw.best),
        stage=pct("stage"),
        n=f"{n:,}",
        n_single=f"{n_single:,}",
    )


READING = """\
**Reading.** Throughputs are messages per second of one asyncio client on one connection;
"overhead %" is the extra time per message over the raw redis-py loop doing the same Redis work
({n_single} messages for the per-message cases, {n} for the others; best of the runs). Per
message, `Producer.publish` costs {single} ({single_us}) over a bare `xadd`, {single_enc} against a
raw loop that also encodes: `publish` builds a one-command pipeline per call (a pipeline object,
`execute`, result checks), which is why the architecture says never to publish one message per
round trip on a hot path. Batched produce costs {b100} ({b100_us}/msg) at B = 100 and {b1000}
({b1000_us}/msg) at B = 1000: the Redis work and redis-py's command packing are identical, the
extra is `flush`'s per-entry Python — msgpack encoding (~0.1 µs), `kind_of(stream)` (a regex
match, twice per entry: for the MAXLEN lookup and again for the metric counts) and the result
loop. Batched consume costs {consume} ({consume_us}/msg): decoding into the `Message` union and
building an `Entry` tuple per message, plus `_flatten`'s per-entry ID decode, against a raw loop
that only decodes. The fenced read costs {fence} ({fence_us}/msg) over a plain XREADGROUP: the Lua
script's lease check is one GET per batch, so the difference is mostly client side — EVALSHA
replies skip redis-py's XREADGROUP callback, and the stage turns each flat field list back into a
dict (`stage._pairs`) before `decode_fields`. A checkpoint acks {ckpt_bus} entries/s in one Lua
call (server-side XPENDING + XACK in chunks of 1000) against {ckpt_raw}/s for a client sending
XACK with 1000 IDs per call; at the stage's cadence (a checkpoint every 5000 entries) fenced
consumption costs {stage} against the stateless raw consume loop.
"""


def label_keys() -> list[str]:
    return ["single", "single-enc", "batch100", "batch1000", "consume"] + [
        "fence-read",
        "checkpoint",
        "stage",
    ]


async def run(args: argparse.Namespace, command: str) -> str:
    n = args.n
    n_single = args.n_single or max(n // 10, 1)
    data_n = max(n, n_single)
    trades = make_trades(data_n)
    data = Data(trades, [codec.encode(t) for t in trades])
    with harness.redis_server(args.redis_url) as (url, description):
        r = aioredis.Redis.from_url(url, decode_responses=False)
        try:
            await harness.quiet_embedded(r, description)
            info = await harness.machine_info(r, description)
            log(f"bench.bus on {description}")
            rows: list[Row] = []
            for case in build_cases(data, n, n_single):
                if args.only and case.name not in args.only:
                    continue
                log(f"{case.name}: {case.n:,} messages x {args.repeat}")
                samples = await run_case(r, case, data, args.repeat)
                rows.extend(Row(label, samples[bus], samples[raw]) for label, bus, raw in case.rows)
        finally:
            await r.aclose()
    body = [
        "Producer, GroupReader and Fence of `ofcommon` against plain redis-py doing the same Redis"
        " work, one asyncio connection, hiredis parser, a six-field `Trade` (about 50 bytes of"
        " msgpack) per entry, each case on fresh streams.",
        "",
        *(f"- {k}: {v}" for k, v in info),
        f"- command: `{command}`",
        "",
        table(rows),
    ]
    if not args.only:
        body += ["", reading(dict(zip(label_keys(), rows, strict=True)), n, n_single)]
    return "\n".join(body)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--n", type=int, default=200_000, help="messages per batched run")
    p.add_argument("--n-single", type=int, default=0, help="per-message runs (default n/10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case and side")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    p.add_argument(
        "--only", action="append", help="run only these cases: single batch100 batch1000 ..."
    )
    return p.parse_args(argv)


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
