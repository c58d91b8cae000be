"""The simulator's output: deterministic to the byte, and a consistent market after every message.

Book and tape invariants are checked by ``ofcommon.simulator.audit`` replaying whole runs.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import cache
from random import Random

import pytest

from ofcommon import codec
from ofcommon.instruments import Instrument, load_registry
from ofcommon.messages import BookDelta, BookSnapshot, Heartbeat, Side, SideSource, Trade
from ofcommon.sessions import SESSIONS, in_session
from ofcommon.simulator import Label, SimConfig, events, simulate
from ofcommon.simulator.arrivals import Hawkes
from ofcommon.simulator.audit import Audit, AuditError, audit
from ofcommon.simulator.book import BUY, Book
from ofcommon.simulator.exchange import SELL
from ofcommon.simulator.labels import encode_label
from ofcommon.simulator.profiles import decimals_of, profile_for
from ofcommon.venue import Published

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
START = 1_709_649_000_000_000_000  # 2024-03-05T14:30:00Z, NY cash open
SYMBOLS = ("BTCUSDT", "NAS100USDT", "EURUSD")


def instruments(*symbols: str) -> tuple[Instrument, ...]:
    registry = load_registry()
    return tuple(registry.get(s) for s in symbols or SYMBOLS)


def config(**overrides: object) -> SimConfig:
    base: dict[str, object] = {
        "instruments": instruments(),
        "start_ns": START,
        "duration_ns": 20 * MINUTE,
        "episode_gap_s": 60.0,
    }
    base.update(overrides)
    return SimConfig(**base)


def wire(items: Iterable[Published | Label]) -> list[bytes]:
    """Each item exactly as it leaves the simulator: stream and encoded message, or label line."""
    out = []
    for item in items:
        if isinstance(item, Label):
            out.append(b"label " + encode_label(item))
        else:
            out.append(f"{item.symbol} {item.kind} ".encode() + codec.encode(item.msg))
    return out


@cache
def sample(seed: int = 42, minutes: int = 20) -> tuple[bytes, ...]:
    return tuple(wire(simulate(config(seed=seed, duration_ns=minutes * MINUTE))))


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_messages_and_labels() -> None:
    first = sample()
    second = tuple(wire(simulate(config())))
    assert hashlib.sha256(b"".join(first)).digest() == hashlib.sha256(b"".join(second)).digest()
    assert first == second
    assert any(line.startswith(b"label ") for line in first)  # episodes are part of the check


def test_another_seed_gives_another_run() -> None:
    assert sample(seed=43) != sample()
    assert sample(seed=43)[:5] != sample()[:5]


def test_a_longer_run_extends_a_shorter_one() -> None:
    short = sample(minutes=20)
    assert sample(minutes=30)[: len(short)] == short


def test_instruments_do_not_influence_each_other() -> None:
    alone = list(simulate(config(instruments=instruments("EURUSD"))))
    together = [
        i
        for i in simulate(config())
        if (i.instrument if isinstance(i, Label) else i.symbol) == "EURUSD"
    ]
    assert wire(alone) == wire(together)


def test_events_come_in_event_time_order() -> None:
    times = [ts for ts, _ in events(config())]
    assert times == sorted(times)
    assert times[0] == START


# --- invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_book_and_tape_stay_consistent_after_every_message(seed: int) -> None:
    insts = instruments()
    run = config(seed=seed, duration_ns=90 * MINUTE, episode_gap_s=45.0, book_depth=25)
    audits = audit(simulate(run), {i.symbol: i.tick_size for i in insts}, depth=25)
    assert set(audits) == set(SYMBOLS)
    for a in audits.values():
        assert a.trades > 1000
        assert a.book_messages > a.trades


def test_messages_are_what_a_feed_sends() -> None:
    kinds: Counter[tuple[str, str]] = Counter()
    for item in simulate(config(duration_ns=5 * MINUTE)):
        if isinstance(item, Label):
            continue
        kinds[(item.kind, type(item.msg).__name__)] += 1
        msg = item.msg
        if isinstance(msg, Trade):
            assert msg.side in (Side.BUY, Side.SELL)
            assert msg.side_source == SideSource.EXCHANGE  # a venue that tells the aggressor
            assert msg.trade_id.startswith("sim-")
        assert msg.ts_recv > msg.ts_event
    assert set(kinds) == {
        ("trades", "Trade"),
        ("trades", "Heartbeat"),
        ("book", "BookSnapshot"),
        ("book", "BookDelta"),
        ("book", "Heartbeat"),
    }
    assert kinds[("book", "BookSnapshot")] == len(SYMBOLS)


def test_heartbeats_every_second_on_every_stream() -> None:
    beats: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item in simulate(config(duration_ns=3 * MINUTE, heartbeat_ns=SECOND)):
        if not isinstance(item, Label) and isinstance(item.msg, Heartbeat):
            assert item.msg.source == "sim"
            beats[(item.symbol, item.kind)].append(item.msg.ts_event)
    assert len(beats) == 2 * len(SYMBOLS)
    for stamps in beats.values():
        assert stamps == list(range(START, START + 3 * MINUTE, SECOND))


def test_a_closed_session_has_heartbeats_only_and_reopens_with_a_snapshot() -> None:
    nas = instruments("NAS100USDT")
    spec = SESSIONS[nas[0].session]
    start = START - 5 * MINUTE  # 09:25 New York: five minutes before the cash open
    items = list(simulate(config(instruments=nas, start_ns=start, duration_ns=15 * MINUTE)))
    audit(items, {"NAS100USDT": nas[0].tick_size})
    trades = [i.msg for i in items if not isinstance(i, Label) and isinstance(i.msg, Trade)]
    assert trades
    assert all(in_session(spec, t.ts_event) for t in trades)
    snapshots = [
        i.msg for i in items if not isinstance(i, Label) and isinstance(i.msg, BookSnapshot)
    ]
    assert [s.ts_event for s in snapshots] == [start, START]  # the open rebuilds the book
    beats = [
        i.msg.ts_event
        for i in items
        if not isinstance(i, Label) and i.kind == "trades" and isinstance(i.msg, Heartbeat)
    ]
    assert beats[:300] == list(range(start, START, SECOND))  # bars close while the market is shut


def test_prices_start_at_the_instruments_levels() -> None:
    first: dict[str, float] = {}
    for item in simulate(config(duration_ns=MINUTE)):
        if not isinstance(item, Label) and isinstance(item.msg, Trade):
            first.setdefault(item.symbol, item.msg.price)
    assert 64_900 < first["BTCUSDT"] < 65_100
    assert 17_950 < first["NAS100USDT"] < 18_050
    assert 1.08 < first["EURUSD"] < 1.09


def test_background_alone_stays_below_the_detector_thresholds() -> None:
    """Without episodes no one-minute bar reaches the initiative delta or the absorption volume at
    one price: a detector's hits on a simulated run are the episodes, not the noise."""
    insts = instruments()
    bars: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    rows: Counter[tuple[str, int, float]] = Counter()
    for item in simulate(config(duration_ns=120 * MINUTE, patterns=())):
        assert not isinstance(item, Label) or item.pattern == "regime"
        if not isinstance(item, Label) and isinstance(item.msg, Trade):
            t = item.msg
            bar = bars[(item.symbol, t.ts_event // MINUTE)]
            bar[0] += t.size
            bar[1] += t.size * t.side
            rows[(item.symbol, t.ts_event // MINUTE, t.price)] += t.size
    for inst in insts:
        deltas = [abs(d) for (s, _), (_, d) in bars.items() if s == inst.symbol]
        volumes = [v for (s, _), (v, _) in bars.items() if s == inst.symbol]
        assert max(deltas) < inst.initiative.min_delta_threshold, inst.symbol
        assert max(v for (s, _, _), v in rows.items() if s == inst.symbol) < (
            inst.absorption.min_aggressive_volume
        )
        # Bars carry about half the absorption threshold: alive, yet clearly below it.
        assert 0.3 < statistics.mean(volumes) / inst.absorption.min_aggressive_volume < 0.7


def test_only_the_configured_patterns_are_injected() -> None:
    labels = [i for i in simulate(config(patterns=("sweep",))) if isinstance(i, Label)]
    assert {lb.pattern for lb in labels} <= {"sweep", "regime"}
    assert any(lb.pattern == "sweep" for lb in labels)


def test_config_rejects_unknown_patterns_and_repeated_instruments() -> None:
    with pytest.raises(ValueError, match="unknown episode patterns"):
        config(patterns=("iceberg",))
    with pytest.raises(ValueError, match="repeat"):
        config(instruments=instruments("BTCUSDT", "BTCUSDT"))


# --- parts ---------------------------------------------------------------------------------


def test_hawkes_arrivals_keep_their_rate_and_cluster() -> None:
    hawkes = Hawkes(Random(7), rate=5.0, branching=0.6, beta=1.5)
    t, counts = 0.0, Counter[int]()
    for _ in range(200_000):
        t += hawkes.next_gap()
        counts[int(t)] += 1
    assert 4.75 < 200_000 / t < 5.25
    per_second = [counts[s] for s in range(int(t))]
    # A Poisson process has variance = mean; self-excitation makes bursts.
    assert statistics.pvariance(per_second) > 2 * statistics.mean(per_second)


def test_book_walks_refills_and_never_crosses() -> None:
    book = Book(Random(1), 1000, depth=10, level_lots=50)
    assert (book.bid, book.ask) == (1000, 1001)
    total = sum(book.asks[:3])
    fills = book.take(BUY, total)
    assert [tick for tick, _ in fills] == [1001, 1002, 1003]
    assert book.ask == 1004
    assert len(book.asks) == 10  # the window is refilled at the far end
    assert book.changed_asks[1001] == 0
    assert 1013 in book.changed_asks
    assert book.improve(BUY, 7)
    assert book.bid == 1001
    while book.improve(SELL, 7):
        pass
    assert book.ask - book.bid == 1
    book.shift(1)
    assert (book.bid, book.ask) == (1002, 1003)
    book.shift(-1)
    assert (book.bid, book.ask) == (1001, 1002)
    huge = book.take(SELL, 10**9)  # an order larger than the book stops one level short
    assert len(huge) == 9
    assert len(book.bids) == 10
    assert book.bid < book.ask


def test_profiles_follow_the_registry() -> None:
    for inst in load_registry():
        p = profile_for(inst)
        assert p.price_decimals == decimals_of(inst.tick_size)
        assert p.thin_lots * p.lot == pytest.approx(inst.sweep.thin_book_threshold)
        assert p.level_lots > p.thin_lots
    assert [decimals_of(0.00001), decimals_of(1.0), decimals_of(0.5)] == [5, 0, 1]


# --- the audit catches what it claims to -----------------------------------------------------


def _audit(*msgs: tuple[str, object]) -> None:
    a = Audit("T", 0.5)
    for kind, msg in msgs:
        a.feed(kind, msg)


SNAP = BookSnapshot(10, 11, 1, [(100.0, 2.0), (99.5, 3.0)], [(100.5, 1.0), (101.0, 4.0)])


@pytest.mark.parametrize(
    ("msgs", "rule"),
    [
        ([("book", BookDelta(10, 11, 1, [], []))], "before the first snapshot"),
        ([("book", SNAP), ("book", BookDelta(12, 12, 3, [], []))], "does not follow"),
        ([("book", SNAP), ("book", BookDelta(12, 12, 2, [(100.5, 1.0)], []))], "crossed"),
        ([("book", SNAP), ("book", BookDelta(12, 12, 2, [(100.25, 1.0)], []))], "tick grid"),
        ([("book", SNAP), ("book", BookDelta(12, 12, 2, [(98.0, 0.0)], []))], "does not rest"),
        ([("book", SNAP), ("book", BookDelta(9, 12, 2, [], []))], "event time went back"),
        (
            [("book", SNAP), ("trades", Trade(12, 12, 101.0, 1.0, Side.BUY, "a", seq=1))],
            "traded through",
        ),
        (
            [("book", SNAP), ("trades", Trade(12, 12, 100.5, 2.0, Side.BUY, "a", seq=1))],
            "only 1.0 rested",
        ),
        (
            [("book", SNAP), ("trades", Trade(12, 12, 100.5, 1.0, Side.BUY, "a", seq=0))],
            "not the book",
        ),
        (
            [("book", SNAP), ("trades", Trade(12, 12, 102.0, 1.0, Side.BUY, "a", seq=1))],
            "no resting",
        ),
        (
            [
                ("book", SNAP),
                ("trades", Trade(12, 12, 100.5, 0.5, Side.BUY, "a", seq=1)),
                ("book", BookDelta(12, 12, 2, [], [(100.5, 1.0)])),
            ],
            "after trades",
        ),
        (
            [
                ("book", SNAP),
                ("trades", Trade(12, 12, 100.0, 0.5, Side.SELL, "a", seq=1)),
                ("trades", Trade(12, 12, 100.0, 0.5, Side.SELL, "a", seq=1)),
            ],
            "trade_id repeats",
        ),
    ],
)
def test_audit_rejects(msgs: list[tuple[str, object]], rule: str) -> None:
    with pytest.raises(AuditError, match=rule):
        _audit(*msgs)


def test_audit_accepts_a_walk_and_its_consumption() -> None:
    _audit(
        ("book", SNAP),
        ("trades", Trade(12, 12, 100.5, 1.0, Side.BUY, "a", seq=1)),
        ("trades", Trade(12, 12, 101.0, 1.5, Side.BUY, "b", seq=1)),
        ("book", BookDelta(12, 12, 2, [], [(100.5, 0.0), (101.0, 2.5), (101.5, 3.0)])),
        ("trades", Trade(13, 13, 101.0, 2.5, Side.BUY, "c", seq=2)),
    )
