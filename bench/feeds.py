"""The feed parsers (Bybit v5, MT5) alone and publishing through ``ofcommon.bus.Producer``.

    uv run python -m bench.feeds [--redis-url URL] [--out docs/benchmarks.md]

Run it from the repository root: the frames come from ``tests/support`` on real recorded data in
``../shared/data/real`` (a case whose files are absent is skipped, with the path it looked for):
  - Bybit ``publicTrade`` and ``orderbook.{50,200}`` frames: the Binance spot BTCUSDT capture
    converted by ``tests/support/binance_frames.py`` (one trade per frame; the REST snapshot cut to
    the depth, then every depth diff as a delta);
  - MT5 ticks frames: ``tests/support/fake_mt5_data.py``'s quote-only EURUSD ticks (HistData) and
    exchange ticks of the same Binance capture (trades with BUY/SELL flags between bid/ask
    changes), grouped into one frame per 100 ms poll window as the live poller would see them.
Each capture is looped until a run holds ``--n-trades`` trades, ``--n-deltas`` deltas or
``--n-ticks`` ticks; every loop shifts trade ids, ``seq``, ``u`` and times past the previous one,
so the parser neither drops duplicates nor sees a gap (checked after every run), and every loop of
a book replays from its snapshot.

Per case, on fresh streams of one Redis, interleaved, best and median of ``--repeat`` runs:
  - parse + publish: ``parser.parse`` per frame, ``Producer.add`` per message, ``flush`` every
    ``--batch`` messages (the live publishers' pattern); "parse alone" is the time spent in the
    parse calls of that same run (timed per batch of frames, nothing else in between);
  - raw: a ``pipeline(transaction=False)`` of ``--batch`` XADD MAXLEN ~ of the very bytes the
    Producer wrote (read back from Redis after the first run, in entry-ID order).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from bench import harness
from bench.harness import Samples, fmt_rate, log
from of_feed_bybit.parser import BybitParser
from of_feed_mt5 import frames as mt5_frames
from of_feed_mt5.parser import Mt5Parser
from ofcommon import codec, keys, retention
from ofcommon.bus import Producer
from ofcommon.instruments import BybitVenue, Instrument, Registry, default_instruments
from ofcommon.venue import FrameParser, Published

HEADING: Final = "## Feeds (issue 3)"
SERVICE: Final = "bench"
KINDS: Final = ("trades", "book")
MT5_CLOCK: Final = "+120"  # broker server time = UTC + 2 h, as the tests' fake terminal
MT5_OFFSET_MIN: Final = 120
MT5_POLL_MS: Final = 100  # Mt5Settings.mt5_poll_ms default: one frame per poll window
READ_BACK: Final = 10_000
SIDES: Final = ("bus", "raw")

MEASURED: Final = [
    "services/feed_bybit/src/of_feed_bybit/parser.py",
    "services/feed_bybit/src/of_feed_bybit/book.py",
    "services/feed_mt5/src/of_feed_mt5/parser.py",
    "services/feed_mt5/src/of_feed_mt5/frames.py",
    "services/feed_mt5/src/of_feed_mt5/side.py",
    "services/feed_mt5/src/of_feed_mt5/servertime.py",
    *(f"libs/ofcommon/src/ofcommon/{m}.py" for m in ("bus", "codec", "messages", "keys")),
]

# measurement name -> (seconds, count) of one run
Timings = dict[str, tuple[float, int]]


# --- frames ----------------------------------------------------------------------------------


@dataclass
class Feed:
    frames: list[tuple[int, bytes]]  # (recv_ns, frame) in order
    items: int  # trades, deltas or ticks in the frames
    loops: int
    note: str  # what was looped, for the table


def _bybit_frames(depth: int, prefix: str) -> list[tuple[int, dict[str, Any]]]:
    from tests.support.binance_frames import binance_to_bybit

    out = []
    for recv_ns, frame in binance_to_bybit(depth=depth):
        obj = msgspec.json.decode(frame)
        if obj["topic"].startswith(prefix):
            out.append((recv_ns, obj))
    return out


def bybit_trades(n: int) -> Feed:
    """``publicTrade`` frames, looped with trade ids, ``seq`` and times moved past the last loop."""
    base = _bybit_frames(50, "publicTrade.")
    rows = [row for _, obj in base for row in obj["data"]]
    ids = [int(row["i"]) for row in rows]
    id_span = max(ids) - min(ids) + 1
    times = [obj["ts"] for _, obj in base] + [row["T"] for row in rows]
    span_ms = max(times) - min(times) + 1000
    loops = math.ceil(n / len(rows))
    encode = msgspec.json.encode
    out: list[tuple[int, bytes]] = []
    for k in range(loops):
        di, dt = k * id_span, k * span_ms
        for recv_ns, obj in base:
            data = [
                {**row, "T": row["T"] + dt, "i": str(int(row["i"]) + di), "seq": row["seq"] + di}
                for row in obj["data"]
            ]
            out.append(
                (recv_ns + dt * 1_000_000, encode({**obj, "ts": obj["ts"] + dt, "data": data}))
            )
    note = f"{len(rows):,} trades in {len(base):,} frames × {loops}"
    return Feed(out, len(rows) * loops, loops, note)


def bybit_book(depth: int, n: int) -> Feed:
    """The snapshot and its deltas, looped: each loop starts again from the snapshot, ``u`` and
    ``seq`` continue where the last loop ended and times move past it."""
    base = _bybit_frames(depth, "orderbook.")
    assert base[0][1]["type"] == "snapshot", "the converted capture starts with its snapshot"
    assert all(obj["type"] == "delta" for _, obj in base[1:])
    u = [obj["data"]["u"] for _, obj in base]
    assert u == list(range(u[0], u[0] + len(base))), "u is contiguous in the converted capture"
    seqs = [obj["data"]["seq"] for _, obj in base]
    seq_span = max(seqs) - min(seqs) + 1
    times = [obj["ts"] for _, obj in base]
    span_ms = max(times) - min(times) + 1000
    deltas = len(base) - 1
    loops = math.ceil(n / deltas)
    encode = msgspec.json.encode
    out: list[tuple[int, bytes]] = []
    for k in range(loops):
        du, ds, dt = k * len(base), k * seq_span, k * span_ms
        for recv_ns, obj in base:
            d = obj["data"]
            data = {**d, "u": d["u"] + du, "seq": d["seq"] + ds}
            out.append(
                (recv_ns + dt * 1_000_000, encode({**obj, "ts": obj["ts"] + dt, "data": data}))
            )
    note = f"1 snapshot + {deltas:,} deltas × {loops}"
    return Feed(out, deltas * loops, loops, note)


def mt5_ticks(kind: str, instrument: str, broker: str, n: int) -> Feed:
    """MT5 ticks (quote-only FX or exchange trades), looped whole seconds apart, one frame per
    ``MT5_POLL_MS`` window of server time."""
    from tests.support import fake_mt5_data as data

    if kind == "fx":
        rows = data.fx_ticks(data.eurusd_quotes(), offset_min=MT5_OFFSET_MIN).tolist()
    else:
        script = data.exchange_ticks(
            data.binance_events(), mode="exchange", offset_min=MT5_OFFSET_MIN
        )
        rows = script.ticks.tolist()
    msc = [row[5] for row in rows]
    span_ms = (max(msc) - min(msc)) // 1000 * 1000 + 1000
    loops = math.ceil(n / len(rows))
    out: list[tuple[int, bytes]] = []

    def emit(window: int, group: list[tuple[Any, ...]]) -> None:
        recv_ns = ((window + 1) * MT5_POLL_MS - MT5_OFFSET_MIN * 60_000) * 1_000_000
        out.append((recv_ns, mt5_frames.ticks_frame(instrument, broker, MT5_CLOCK, group)))

    for k in range(loops):
        shift = k * span_ms
        group: list[tuple[Any, ...]] = []
        window = -1
        for time_s, bid, ask, last, volume, time_msc, flags, volume_real in rows:
            t = time_msc + shift
            if group and t // MT5_POLL_MS != window:
                emit(window, group)
                group = []
            window = t // MT5_POLL_MS
            group.append((time_s + shift // 1000, bid, ask, last, volume, t, flags, volume_real))
        emit(window, group)
    note = f"{len(rows):,} ticks × {loops}"
    return Feed(out, len(rows) * loops, loops, note)


# --- cases -----------------------------------------------------------------------------------


def bench_instrument(symbol: str, **changes: Any) -> Instrument:
    """A built-in instrument renamed into the BENCH- namespace: its streams are ours to delete."""
    inst = next(i for i in default_instruments() if i.symbol == symbol)
    return msgspec.structs.replace(inst, symbol=f"BENCH-{symbol}", **changes)


BTC: Final = bench_instrument("BTCUSDT", bybit=BybitVenue(category="spot", symbol="BTCUSDT"))
EURUSD: Final = bench_instrument("EURUSD")


def bybit_parser(depth: int) -> Callable[[], FrameParser]:
    return lambda: BybitParser("spot", Registry([BTC]), depth=depth)


def mt5_parser() -> FrameParser:
    return Mt5Parser(Registry([BTC, EURUSD]))


def check_bybit_trades(parser: FrameParser, feed: Feed) -> None:
    assert isinstance(parser, BybitParser)
    c = parser.counters
    assert c["trades"] == feed.items, c
    assert c["duplicates"] == c["malformed"] == c["gaps"] == 0, c


def check_bybit_book(parser: FrameParser, feed: Feed) -> None:
    assert isinstance(parser, BybitParser)
    c = parser.counters
    assert c["deltas"] == feed.items, c
    assert c["snapshots"] == feed.loops, c
    assert c["gaps"] == c["crossed"] == c["ignored_deltas"] == c["malformed"] == 0, c


def check_mt5(parser: FrameParser, feed: Feed) -> None:
    assert isinstance(parser, Mt5Parser)
    assert parser.counts["ticks"] == feed.items, parser.counts
    assert parser.counts["rejected"] == 0, parser.counts


@dataclass
class Case:
    name: str  # for --only and the logs
    label: str
    item: str  # what "parse alone, items/s" counts
    symbol: str  # internal symbol of the streams written
    needs: list[Path]
    load: Callable[[], Feed]
    parser: Callable[[], FrameParser]
    check: Callable[[FrameParser, Feed], None]


@dataclass
class Result:
    case: Case
    feed: Feed | None = None
    frames: int = 0
    msgs: int = 0
    samples: dict[str, Samples] = field(default_factory=dict)
    skipped: str = ""


def book_loader(depth: int, n: int) -> Callable[[], Feed]:
    return lambda: bybit_book(depth, n)


def build_cases(args: argparse.Namespace) -> list[Case]:
    try:
        from tests.support import fake_mt5_data, real_data
    except ModuleNotFoundError as err:
        raise SystemExit(
            f"bench.feeds reads its frames through tests/support ({err}): run it from the"
            " repository root, e.g. `uv run python -m bench.feeds`"
        ) from None
    binance = real_data.BINANCE_SPOT  # what tests/support/binance_frames.py converts
    eurusd = real_data.REAL_DATA / fake_mt5_data.EURUSD_CSV
    binance_mt5 = real_data.REAL_DATA / fake_mt5_data.BINANCE_GZ
    return [
        Case(
            "trades",
            "Bybit trades (`publicTrade`, 1 trade per frame)",
            "trades",
            BTC.symbol,
            [binance],
            lambda: bybit_trades(args.n_trades),
            bybit_parser(50),
            check_bybit_trades,
        ),
        *(
            Case(
                f"book{depth}",
                f"Bybit book deltas, depth {depth} (`orderbook.{depth}`)",
                "deltas",
                BTC.symbol,
                [binance],
                book_loader(depth, args.n_deltas),
                bybit_parser(depth),
                check_bybit_book,
            )
            for depth in (50, 200)
        ),
        Case(
            "mt5-fx",
            "MT5 ticks, quote-only FX (EURUSD → `Quote` + tick-count `Trade`)",
            "ticks",
            EURUSD.symbol,
            [eurusd],
            lambda: mt5_ticks("fx", EURUSD.symbol, "EURUSDm", args.n_ticks),
            mt5_parser,
            check_mt5,
        ),
        Case(
            "mt5-exchange",
            "MT5 ticks, exchange trades (BTCUSD, BUY/SELL flags, + quotes)",
            "ticks",
            BTC.symbol,
            [binance_mt5],
            lambda: mt5_ticks("exchange", BTC.symbol, "BTCUSD", args.n_ticks),
            mt5_parser,
            check_mt5,
        ),
    ]


# --- the two sides ---------------------------------------------------------------------------


async def parse_publish(
    r: aioredis.Redis, case: Case, feed: Feed, batch: int
) -> tuple[Timings, int]:
    """Parse every frame and publish every message, flushing each ``batch`` messages; the parse
    calls are timed per batch of frames, so "parse alone" is part of this very run."""
    parser = case.parser()
    producer = Producer(r, service=SERVICE)
    parse = parser.parse
    add = producer.add
    stream = keys.stream
    frames = feed.frames
    nframes = len(frames)
    pending: list[Published] = []
    chunk: list[Published]
    i = msgs = 0
    parse_s = 0.0
    t_start = time.perf_counter()
    while i < nframes or pending:
        t0 = time.perf_counter()
        while len(pending) < batch and i < nframes:
            recv_ns, frame = frames[i]
            pending += parse(recv_ns, frame)
            i += 1
        parse_s += time.perf_counter() - t0
        if len(pending) > batch:
            chunk, pending = pending[:batch], pending[batch:]
        else:
            chunk, pending = pending, []
        for p in chunk:
            add(stream(p.symbol, p.kind), p.msg)
        await producer.flush()
        msgs += len(chunk)
    total = time.perf_counter() - t_start
    case.check(parser, feed)
    timings = {
        "parse_frames": (parse_s, nframes),
        "parse_items": (parse_s, feed.items),
        "parse": (parse_s, msgs),
        "bus": (total, msgs),
        "publish": (total - parse_s, msgs),
    }
    return timings, msgs


Payloads = list[tuple[str, int, bytes]]  # (stream, MAXLEN, encoded message)


async def raw_xadd(r: aioredis.Redis, payloads: Payloads, batch: int) -> Timings:
    chunks = [payloads[i : i + batch] for i in range(0, len(payloads), batch)]
    t0 = time.perf_counter()
    for chunk in chunks:
        pipe = r.pipeline(transaction=False)
        for stream, maxlen, data in chunk:
            pipe.xadd(stream, {codec.FIELD: data}, maxlen=maxlen, approximate=True)
        await pipe.execute()
    return {"raw": (time.perf_counter() - t0, len(payloads))}


async def read_back(r: aioredis.Redis, streams: list[str]) -> Payloads:
    """What the Producer wrote to ``streams``, merged in entry-ID order."""
    found: list[tuple[int, int, int, str, bytes]] = []
    for k, stream in enumerate(streams):
        start = "-"
        while entries := await r.xrange(stream, min=start, count=READ_BACK):
            for entry_id, fields in entries:
                ms, seq = entry_id.split(b"-")
                found.append((int(ms), int(seq), k, stream, fields[codec.FIELD]))
            start = "(" + entries[-1][0].decode()
    found.sort(key=lambda e: e[:3])
    maxlen = {s: retention.for_kind(keys.parse_stream(s)[1]).maxlen for s in streams}
    return [(stream, maxlen[stream], data) for _, _, _, stream, data in found]


async def run_case(
    r: aioredis.Redis, case: Case, feed: Feed, batch: int, repeat: int
) -> tuple[dict[str, Samples], int]:
    streams = [keys.stream(case.symbol, kind) for kind in KINDS]
    samples: dict[str, Samples] = {}
    payloads: Payloads | None = None
    msgs = 0
    for rep in range(repeat):
        # rotate the order so that no side always runs first; the first run is the bus's
        order = SIDES[rep % 2 :] + SIDES[: rep % 2]
        for side in order:
            await r.delete(*streams)
            harness.settle()
            if side == "bus":
                timings, msgs = await parse_publish(r, case, feed, batch)
                if payloads is None:
                    payloads = await read_back(r, streams)
                    assert len(payloads) == msgs, (len(payloads), msgs)
            else:
                assert payloads is not None
                timings = await raw_xadd(r, payloads, batch)
            written = sum([await r.xlen(s) for s in streams])
            assert written == msgs, (case.name, side, written, msgs)
            for what, (seconds, count) in timings.items():
                samples.setdefault(what, Samples()).add(seconds, count)
            if side == "bus":
                s, n = timings["parse_items"]
                shown = f"parse {n / s:,.0f} {case.item}/s, parse+publish"
                shown += f" {msgs / timings['bus'][0]:,.0f} msgs/s"
            else:
                shown = f"raw {msgs / timings['raw'][0]:,.0f} msgs/s"
            log(f"  {case.name} #{rep + 1} {side}: {shown}")
    await r.delete(*streams)
    return samples, msgs


# --- report ----------------------------------------------------------------------------------


def us(samples: Samples) -> float:
    """Time per counted unit of the best run, µs."""
    return 1e6 / samples.best


def table(results: list[Result]) -> str:
    lines = [
        "| case | looped data | frames / msgs per run | parse alone frames/s"
        " | parse alone items/s | parse + publish msgs/s | raw XADD msgs/s | ratio"
        " | µs/msg: parse · publish · raw | median: parse items/s · p+p · raw msgs/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        case = res.case
        if res.skipped or res.feed is None:
            lines.append(f"| {case.label} | skipped: {res.skipped} | | | | | | | | |")
            continue
        s = res.samples
        lines.append(
            f"| {case.label} | {res.feed.note} | {res.frames:,} / {res.msgs:,}"
            f" | {fmt_rate(s['parse_frames'].best)}"
            f" | {fmt_rate(s['parse_items'].best)} {case.item}/s"
            f" | {fmt_rate(s['bus'].best)} | {fmt_rate(s['raw'].best)}"
            f" | {s['bus'].best / s['raw'].best:.2f}"
            f" | {us(s['parse']):.1f} · {us(s['publish']):.1f} · {us(s['raw']):.1f}"
            f" | {fmt_rate(s['parse_items'].median)} · {fmt_rate(s['bus'].median)}"
            f" · {fmt_rate(s['raw'].median)} |"
        )
    return "\n".join(lines)


def reading(results: dict[str, Result], digest: str) -> str:
    def s(name: str, what: str) -> Samples:
        return results[name].samples[what]

    def ratio(name: str) -> str:
        return f"{s(name, 'bus').best / s(name, 'raw').best:.2f}"

    def share(name: str) -> str:
        """Parse's share of the parse + publish time, best runs."""
        return f"{s(name, 'bus').best / s(name, 'parse').best:.0%}"

    def rate(name: str, what: str) -> str:
        return fmt_rate(s(name, what).best)

    def micro(name: str, what: str) -> str:
        return f"{us(s(name, what)):.1f}"

    numbers = NUMBERS.format(
        b50_parse=micro("book50", "parse_items"),
        b200_parse=micro("book200", "parse_items"),
        b50_raw=micro("book50", "raw"),
        b50_rate=rate("book50", "parse_items"),
        b200_rate=rate("book200", "parse_items"),
        b50_ratio=ratio("book50"),
        b200_ratio=ratio("book200"),
        b50_share=share("book50"),
        tr_rate=rate("trades", "parse_items"),
        tr_parse=micro("trades", "parse"),
        tr_ratio=ratio("trades"),
        tr_share=share("trades"),
        tr_pub=micro("trades", "publish"),
        tr_raw=micro("trades", "raw"),
        b50_pub=micro("book50", "publish"),
        fx_rate=rate("mt5-fx", "parse_items"),
        fx_ratio=ratio("mt5-fx"),
        fx_pub=micro("mt5-fx", "publish"),
        fx_raw=micro("mt5-fx", "raw"),
        ex_rate=rate("mt5-exchange", "parse_items"),
        ex_ratio=ratio("mt5-exchange"),
    )
    return harness.reading(numbers, WHERE, digest=digest, profiled=PROFILED_DIGEST)


# harness.code_digest(MEASURED) of the code that WHERE below was profiled on
PROFILED_DIGEST: Final = "68a7a112d3b6"

NUMBERS = """
**Reading.** Parsing, not Redis, is the feeds' ceiling. A depth-50 delta takes {b50_parse} µs
to parse ({b50_rate} deltas/s; depth 200: {b200_parse} µs, {b200_rate}/s) against {b50_raw} µs
to XADD its message raw, so parse + publish runs at {b50_ratio} of the raw rate (depth 200:
{b200_ratio}) and parsing is {b50_share} of its time. Trades parse at {tr_rate}/s ({tr_parse} µs
each) and parse + publish reaches {tr_ratio} of raw, parsing {tr_share} of the time; the publish
part costs {tr_pub} µs per trade against {tr_raw} µs raw ({b50_pub} µs per delta). MT5 parses
{fx_rate} quote-only ticks/s, two messages each, at {fx_ratio} of raw (publish {fx_pub} µs
against {fx_raw} µs per message), and {ex_rate} exchange ticks/s ({ex_ratio} of raw).
"""

WHERE = """
Where the time goes (stage timings and cProfile on the code with digest {profiled}, one pass over
the capture): a delta of this capture carries about 36 levels, 72 decimal strings, and costs
≈91 µs alone at depth 50: ≈11 µs msgspec decoding, ≈55 µs `parse_levels`, ≈29 µs
`L2Book.update` (apply 7, depth window 11, sorting the changes 10) and ≈3 µs `crossed()` (≈9 µs
at depth 200: max/min over each whole side). The decimal validation is the hot spot:
`parse_decimal` takes ≈0.67 µs a string (regex fullmatch plus the significant-digit count) where
`float()` takes 0.08 µs; with a fast path for strings of at most 15 characters (they cannot hold
more than 15 digits, so `isascii` + `partition('.')` + `isdigit` decide the shape, anything else
takes today's path and its errors) `parse_levels` drops to ≈28 µs and a delta to ≈65 µs (−29%;
depth 200 ≈98 → ≈72 µs; a trade frame ≈4.3 → ≈3.6 µs). The window work is heavier than on a live
Bybit feed: Binance diffs span the whole book, so each delta inserts about 11 levels the depth
window cuts and deletes about 12 we never held. A trade frame (≈4.4 µs) is ≈1.2 µs decoding,
≈1.5 µs for its two decimals and the rest the `Trade`, the id dedupe and the counters. Publishing:
the Producer given pre-encoded bytes matches raw XADD (≈15 µs per 770-byte delta message, both);
its extra is msgpack encoding (≈0.2 µs a trade, ≈1.2 µs a delta) and `keys.stream`'s two regex
checks (≈0.5 µs a message), and the publish part also pays for freeing the parsed messages (≈2.5
µs a delta). MT5 has no single hot spot: per tick, the msgspec decode of its row, the finite
checks, tick-grid snapping (two `round()` per price, three prices per FX tick), the side estimate
and the trade-id and counter strings. Client, Redis and other work share the 2 cores: read the
best runs beside the medians and the load averages.
"""


async def run(args: argparse.Namespace, command: str) -> tuple[str, bool]:
    """The section's body, and whether any case ran."""
    cases = [c for c in build_cases(args) if not args.only or c.name in args.only]
    with harness.redis_server(args.redis_url) as (url, description):
        r = aioredis.Redis.from_url(url, decode_responses=False)
        try:
            await harness.quiet_embedded(r, description)
            info = await harness.machine_info(r, description, MEASURED)
            log(f"bench.feeds on {description}")
            results: list[Result] = []
            for case in cases:
                res = Result(case)
                results.append(res)
                missing = [str(p) for p in case.needs if not p.is_file()]
                if missing:
                    res.skipped = f"real data not found at {', '.join(missing)}"
                    log(
                        f"{case.name}: SKIPPED, real market data not found at"
                        f" {', '.join(missing)} (the shared ../shared/data/real checkout;"
                        " ORDERFLOW_REAL_DATA overrides the location)"
                    )
                    continue
                t0 = time.perf_counter()
                res.feed = feed = case.load()
                res.frames = len(feed.frames)
                log(
                    f"{case.name}: {feed.note} = {res.frames:,} frames,"
                    f" {feed.items:,} {case.item} (built in {time.perf_counter() - t0:.1f}s),"
                    f" {args.repeat} runs per side"
                )
                res.samples, res.msgs = await run_case(r, case, feed, args.batch, args.repeat)
                res.feed = Feed([], feed.items, feed.loops, feed.note)  # let the frames go
            info.append(("load average at end", harness.load_average()))
        finally:
            await r.aclose()
    skipped = [res.case.name for res in results if res.skipped]
    body = [
        textwrap.fill(
            "`BybitParser` and `Mt5Parser` on real recorded frames (Binance spot BTCUSDT"
            " capture converted to Bybit v5 frames; HistData EURUSD quotes and the same Binance"
            " capture as MT5 ticks frames, one per 100 ms poll), alone and publishing through"
            f" `ofcommon.bus.Producer` (`add` per message, `flush` every {args.batch:,}"
            " messages), against plain redis-py pipelining XADD MAXLEN ~ of the same encoded"
            f" messages {args.batch:,} per round trip. Parse alone = the time inside"
            " `parse()` during the parse + publish runs; ratio = parse + publish / raw"
            " throughput; µs/msg splits the parse + publish run into its parse and publish"
            f" parts. Best of {args.repeat} runs per side, median beside it. Loops shift"
            " trade ids, `seq`, `u` and times, so nothing is deduplicated or seen as a gap.",
            width=100,
            break_long_words=False,
            break_on_hyphens=False,
        ),
        "",
        *(f"- {k}: {v}" for k, v in info),
        f"- command: `{command}`",
        "",
        table(results),
    ]
    if not args.only and not skipped:
        by_name = {res.case.name: res for res in results}
        body += ["", reading(by_name, harness.code_digest(MEASURED))]
    elif skipped:
        body += ["", f"No reading: skipped {', '.join(skipped)} (real data missing)."]
    return "\n".join(body), len(skipped) < len(results)


CASE_NAMES: Final = ["trades", "book50", "book200", "mt5-fx", "mt5-exchange"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.feeds", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--n-trades", type=int, default=200_000, help="trades per Bybit trades run")
    p.add_argument("--n-deltas", type=int, default=100_000, help="deltas per Bybit book run")
    p.add_argument("--n-ticks", type=int, default=50_000, help="ticks per MT5 run")
    p.add_argument("--batch", type=int, default=1000, help="messages per flush / pipeline")
    p.add_argument("--repeat", type=int, default=3, help="runs per case and side")
    p.add_argument("--out", type=Path, help="write/replace the section in this markdown file")
    p.add_argument(
        "--only",
        action="append",
        choices=CASE_NAMES,
        help="run only this case (repeatable); skips the reading",
    )
    args = p.parse_args(argv)
    if args.only and args.out:
        p.error("--only runs part of the cases: it writes no file (drop --out)")
    return args


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = command or harness.command_line("bench.feeds", argv)
    t0 = time.perf_counter()
    body, ran = asyncio.run(run(args, command))
    print(f"{HEADING}\n\n{body}")
    if args.out and not ran:
        log(f"no case ran: {args.out} left as it was")
    elif args.out:
        harness.write_section(args.out, HEADING, body)
        log(f"wrote {HEADING!r} to {args.out}")
    log(f"bench.feeds took {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
