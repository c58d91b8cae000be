"""The API's pure parts against plain calculations: the outbox (order, bound, conflation and
its interval), composing 1m bars onto higher timeframes and the seam with the open bar,
performance statistics, markers, the L2 book image and the token check.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from of_api.auth import bearer_of, token_matches
from of_api.book import BookImage
from of_api.candles import compose, with_open_bar
from of_api.markers import marker
from of_api.outbox import Outbox, Outgoing
from of_api.performance import performance
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    Direction,
    FootprintRow,
    Gap,
    PatternSignal,
    TradeEvent,
)
from ofcommon.tradingday import day_bounds

S = 1_000_000_000
MIN = 60 * S


def _bar(
    open_ts: int, o: float, h: float, lo: float, c: float, v: float, d: float, *, final: bool = True
) -> Bar:
    rows = [FootprintRow(lo, v / 2 - d / 2, v / 2 + d / 2, 3)]
    return Bar(
        "1m",
        open_ts,
        open_ts + MIN,
        o,
        h,
        lo,
        c,
        v,
        v / 2 + d / 2,
        v / 2 - d / 2,
        d,
        min(0.0, d),
        max(0.0, d),
        3,
        (h + lo) / 2,
        lo,
        rows,
        final,
    )


def _random_bars(rng: random.Random, n: int, start: int) -> list[Bar]:
    out, price = [], 100.0
    t = start
    for _ in range(n):
        t += MIN * rng.choice([1, 1, 1, 2, 7])  # holes: minutes without trades
        o = price
        c = round(o + rng.uniform(-1, 1), 2)
        h = round(max(o, c) + rng.uniform(0, 0.5), 2)
        lo = round(min(o, c) - rng.uniform(0, 0.5), 2)
        out.append(_bar(t, o, h, lo, c, round(rng.uniform(1, 10), 3), round(rng.uniform(-3, 3), 3)))
        price = c
    return out


# --- outbox ---------------------------------------------------------------------------------


def _msg(channel: str, n: int) -> Outgoing:
    return Outgoing(channel, "BTCUSDT", {"n": n}, f"{n}-0")


def test_critical_messages_keep_their_order_and_numbers_are_contiguous() -> None:
    box = Outbox(limit=100, intervals={})
    for n in range(50):
        assert box.put_critical(_msg("signal", n))
    sent, later = box.take(0.0)
    assert [m.data["n"] for m in sent] == list(range(50))
    assert later is None
    assert [box.number(m) for m in sent] == list(range(50))


def test_a_full_critical_queue_overflows_with_a_reason_and_refuses_more() -> None:
    box = Outbox(limit=10, intervals={})
    assert all(box.put_critical(_msg("signal", n)) for n in range(10))
    assert not box.put_critical(_msg("signal", 10))
    assert "slow consumer" in box.overflow
    assert len(box.overflow.encode()) <= 123
    assert not box.put_critical(_msg("signal", 11))
    assert len(box.critical) == 10


def test_conflation_keeps_the_latest_and_waits_its_interval() -> None:
    box = Outbox(limit=10, intervals={"tick": 0.2})
    key = ("tick", "BTCUSDT", "")
    for n in range(100):
        box.put_latest(key, _msg("tick", n))
    sent, later = box.take(10.0)
    assert [m.data["n"] for m in sent] == [99]
    assert box.superseded["tick"] == 99
    box.put_latest(key, _msg("tick", 100))
    sent, later = box.take(10.1)  # within the interval: held
    assert sent == []
    assert later == pytest.approx(10.2)
    box.put_latest(key, _msg("tick", 101))
    sent, _ = box.take(10.2)
    assert [m.data["n"] for m in sent] == [101]


def test_a_critical_message_supersedes_the_pending_partial_of_its_key() -> None:
    box = Outbox(limit=10, intervals={"candle": 1.0})
    key = ("candle", "BTCUSDT", "1m")
    box.put_latest(key, _msg("candle", 1))  # partial
    box.put_critical(_msg("candle", 2), key)  # the close of the same bar
    sent, later = box.take(0.0)
    assert [m.data["n"] for m in sent] == [2]
    assert later is None


def test_a_snapshot_restarts_the_sequence() -> None:
    box = Outbox(limit=10, intervals={})
    assert [box.number(_msg("bias", n)) for n in range(3)] == [0, 1, 2]
    assert box.number(Outgoing("bias", "BTCUSDT", None, snapshot=True)) == 0
    assert box.number(_msg("bias", 9)) == 1


# --- candles --------------------------------------------------------------------------------


@pytest.mark.parametrize(("tf", "period"), [("5m", 5 * MIN), ("15m", 15 * MIN), ("1h", 60 * MIN)])
def test_compose_matches_a_plain_grouping(tf: str, period: int) -> None:
    bars = _random_bars(random.Random(period), 400, 28_333_333 * MIN)
    groups: dict[int, list[Bar]] = {}
    for b in bars:
        groups.setdefault(b.open_ts // period * period, []).append(b)
    out = compose(bars, tf, None)
    assert [b.open_ts for b in out] == sorted(groups)
    for b in out:
        parts = groups[b.open_ts]
        assert b.close_ts == b.open_ts + period
        assert (b.open, b.close) == (parts[0].open, parts[-1].close)
        assert b.high == max(p.high for p in parts)
        assert b.low == min(p.low for p in parts)
        assert b.volume == pytest.approx(sum(p.volume for p in parts))
        assert b.delta == pytest.approx(sum(p.delta for p in parts))
        assert b.trades == 3 * len(parts)
        assert math.fsum(r.bid_volume + r.ask_volume for r in b.footprint) == pytest.approx(
            b.volume
        )
        assert b.final == (parts[-1].close_ts == b.open_ts + period)


def test_compose_1d_follows_the_trading_day() -> None:
    inst = load_registry().get("EURUSD")  # rolls at 17:00 New York
    bars = _random_bars(random.Random(3), 3000, 28_483_333 * MIN)
    out = compose(bars, "1D", inst.day_spec)
    for b in out:
        start, end = day_bounds(inst.day_spec, b.open_ts)
        assert (b.open_ts, b.close_ts) == (start, end)
    inside = sum(len([p for p in bars if b.open_ts <= p.open_ts < b.close_ts]) for b in out)
    assert inside == len(bars)


def test_the_open_bar_joins_after_the_last_closed_one_only() -> None:
    closed = _random_bars(random.Random(1), 5, 28_333_333 * MIN)
    last = closed[-1]
    partial = _bar(last.close_ts, 1, 2, 0.5, 1.5, 1, 0.1, final=False)
    assert with_open_bar(closed, partial) == [*closed, partial]
    stale = _bar(last.open_ts, 1, 2, 0.5, 1.5, 1, 0.1, final=False)
    assert with_open_bar(closed, stale) == closed
    assert with_open_bar([], partial) == [partial]
    assert with_open_bar(closed, None) == closed


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_composed_delta_extremes_follow_the_path(deltas: list[float]) -> None:
    bars = [
        Bar(
            "1m",
            i * MIN,
            (i + 1) * MIN,
            1,
            1,
            1,
            1,
            1,
            0.5,
            0.5,
            d,
            min(0.0, d),
            max(0.0, d),
            1,
            1,
            1,
            [],
            True,
        )
        for i, d in enumerate(deltas)
    ]
    (one,) = compose(bars, "1h", None)
    path = [0.0]
    for d in deltas:
        path.append(path[-1] + d)
    assert one.delta_min == pytest.approx(min(path))
    assert one.delta_max == pytest.approx(max(path))


# --- performance ----------------------------------------------------------------------------


def test_performance_against_plain_sums() -> None:
    rs = [2.0, -1.0, 0.0, 1.5, -1.0, None, 3.2]
    trades = [
        {"symbol": "X", "trade_id": f"X-{i}", "exit_ts": (i + 1) * S, "r_multiple": r}
        for i, r in enumerate(rs)
    ]
    p = performance(trades, 1.0)
    with_r = [r for r in rs if r is not None]
    assert p["trades"] == 7
    assert p["with_r"] == 6
    assert p["win_rate"] == pytest.approx(3 / 6)
    assert p["expectancy_r"] == pytest.approx(sum(with_r) / 6)
    assert p["profit_factor"] == pytest.approx((2 + 1.5 + 3.2) / 2)
    assert [e["equity_r"] for e in p["equity_curve"]] == pytest.approx([2, 1, 1, 2.5, 1.5, 4.7])
    hist = {d["from_r"]: d["count"] for d in p["r_distribution"]}
    assert hist == {-1.0: 2, 0.0: 1, 1.0: 1, 2.0: 1, 3.0: 1}


def test_performance_of_nothing() -> None:
    p = performance([])
    assert p["win_rate"] is None
    assert p["expectancy_r"] is None
    assert p["equity_curve"] == []


# --- markers --------------------------------------------------------------------------------


def test_markers_sit_on_the_bar_that_opens_at_the_decision() -> None:
    sig = PatternSignal(
        signal_id="a",
        ts_event=120 * S + 5,
        pattern="absorption",
        direction=Direction.LONG,
        price=10.0,
        strength=50.0,
    )
    m = marker(sig, 60)
    assert m is not None
    assert (m["time"], m["text"], m["position"]) == (120, "ABS", "belowBar")
    ev = TradeEvent(
        event_id="e",
        trade_id="t",
        ts_event=179 * S,
        kind="entry",
        direction=Direction.SHORT,
        price=10.0,
    )
    m2 = marker(ev, 60)
    assert m2 is not None
    assert (m2["time"], m2["text"], m2["position"]) == (
        120,
        "ENTRY ▼",
        "aboveBar",
    )
    watch = TradeEvent(
        event_id="w", trade_id="t", ts_event=1, kind="watch", direction=Direction.LONG, price=1.0
    )
    assert marker(watch, 60) is None


# --- book -----------------------------------------------------------------------------------


def test_book_image_follows_snapshot_and_deltas() -> None:
    rng = random.Random(5)
    bids = {100.0 - i: float(rng.randint(1, 9)) for i in range(10)}
    asks = {101.0 + i: float(rng.randint(1, 9)) for i in range(10)}
    book = BookImage()
    book.apply(BookSnapshot(1, 1, 1, sorted(bids.items(), reverse=True), sorted(asks.items())))
    for seq in range(2, 200):
        p = 100.0 - rng.randint(0, 12) if rng.random() < 0.5 else 101.0 + rng.randint(0, 12)
        size = 0.0 if rng.random() < 0.3 else float(rng.randint(1, 9))
        side = bids if p <= 100.0 else asks
        if size:
            side[p] = size
        else:
            side.pop(p, None)
        lv = [(p, size)]
        book.apply(BookDelta(seq, seq, seq, lv if p <= 100 else [], lv if p > 100 else []))
    view = book.view(5)
    assert [(x["price"], x["quantity"]) for x in view["bids"]] == sorted(
        bids.items(), reverse=True
    )[:5]
    assert [(x["price"], x["quantity"]) for x in view["asks"]] == sorted(asks.items())[:5]
    b5 = sum(s for _, s in sorted(bids.items(), reverse=True)[:5])
    a5 = sum(s for _, s in sorted(asks.items())[:5])
    assert view["imbalance"] == round((b5 - a5) / (b5 + a5), 4)
    book.apply(BookDelta(999, 999, 999, [(1.0, 1.0)], []))  # out of sequence
    assert not book.view(5)["valid"]
    book.apply(Gap(1, 1, "book", "test"))
    assert book.view(5)["bids"] == []


# --- auth -----------------------------------------------------------------------------------


def test_token_checks() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", "s3cre")
    assert not token_matches("s3cret", None)
    assert not token_matches("", "")  # no token configured: nothing matches
    assert bearer_of("Bearer abc") == "abc"
    assert bearer_of("bearer  abc ") == "abc"
    assert bearer_of("Basic abc") is None
    assert bearer_of("Bearer ") is None
    assert bearer_of(None) is None
