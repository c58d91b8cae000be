"""Aggressor side of MT5 ticks: exchange flags, then the tick test and Lee–Ready, and quote
pressure for quote-only FX ticks, which never pass for real volume."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from tests.support import fake_mt5, fake_mt5_data as data

from of_feed_mt5 import frames
from of_feed_mt5.parser import Mt5Parser
from of_feed_mt5.side import QuotePressure, TickTest, TradeClassifier, flagged_side
from ofcommon.instruments import load_registry
from ofcommon.messages import Quote, Side, SideSource, SizeKind, Trade

BUY, SELL = fake_mt5.TICK_FLAG_BUY, fake_mt5.TICK_FLAG_SELL


def _frame(ticks: npt.NDArray[np.void], instrument: str, clock: str = "+120") -> bytes:
    return frames.ticks_frame(instrument, instrument, clock, ticks.tolist())


@pytest.mark.parametrize(
    ("flags", "side"),
    [
        (BUY | 0x18, Side.BUY),
        (SELL | 0x18, Side.SELL),
        (BUY | SELL | 0x18, None),  # both: exchange feeds and some FX brokers set both
        (0x18, None),
        (0x86, None),  # BID|ASK|0x80 (undocumented bit): no side
    ],
)
def test_exactly_one_flag_gives_the_side(flags: int, side: Side | None) -> None:
    assert flagged_side(flags) == side


def test_tick_test_uses_the_last_different_price() -> None:
    test = TickTest()
    assert [test.push(p) for p in (10, 10, 11, 11, 11, 9, 9, 10)] == [0, 0, 1, 1, 1, -1, -1, 1]


def test_flags_win_over_estimates() -> None:
    c = TradeClassifier()
    assert c.classify(100.0, SELL, 99.0, 99.5) == (Side.SELL, SideSource.EXCHANGE)


def test_lee_ready_compares_with_the_previous_quote_mid() -> None:
    c = TradeClassifier("lee_ready")
    assert c.classify(100.5, 0x18, 100.0, 100.5) == (Side.BUY, SideSource.QUOTE_RULE)
    assert c.classify(100.0, 0x18, 100.0, 100.5) == (Side.SELL, SideSource.QUOTE_RULE)
    # At the mid the tick test decides: 100.25 is an uptick from 100.0.
    assert c.classify(100.25, 0x18, 100.0, 100.5) == (Side.BUY, SideSource.TICK_RULE)


def test_without_a_quote_lee_ready_falls_back_to_the_tick_test() -> None:
    c = TradeClassifier("lee_ready")
    assert c.classify(50.0, 0x18, 0.0, 0.0) is None  # no prior price: unknown
    assert c.classify(49.0, 0x18, 0.0, 0.0) == (Side.SELL, SideSource.TICK_RULE)
    assert c.classify(49.0, 0x18, 51.0, 50.0) == (Side.SELL, SideSource.TICK_RULE)  # crossed


def test_the_tick_rule_ignores_quotes() -> None:
    c = TradeClassifier("tick_rule")
    c.classify(100.0, 0x18, 0, 0)
    assert c.classify(100.5, 0x18, 101.0, 101.5) == (Side.BUY, SideSource.TICK_RULE)
    with pytest.raises(ValueError, match="side rule"):
        TradeClassifier("coin_flip")


def test_quote_pressure_is_the_sign_of_the_mid_change() -> None:
    p = QuotePressure()
    assert p.push(1.1000, 1.1002) is None
    assert p.push(1.1001, 1.1002) == (Side.BUY, SideSource.TICK_RULE)  # bid up alone
    assert p.push(1.1001, 1.1002) == (Side.BUY, SideSource.TICK_RULE)  # unchanged: carried
    assert p.push(1.1000, 1.1001) == (Side.SELL, SideSource.TICK_RULE)


def test_quote_only_ticks_become_quotes_and_tick_count_trades() -> None:
    t = 1_700_000_000_000
    ticks = fake_mt5.ticks(
        [
            (t // 1000, 1.10000, 1.10020, 0.0, 0, t, 6, 0.0),
            (t // 1000, 1.10010, 1.10020, 0.0, 0, t, 2, 0.0),
            (t // 1000, 1.10010, 1.10030, 0.0, 0, t + 1, 4, 0.0),
            (t // 1000, 1.10000, 1.10010, 0.0, 0, t + 2, 134, 0.0),  # BID|ASK|0x80
        ]
    )
    registry = load_registry()
    out = Mt5Parser(registry).parse(9, _frame(ticks, "EURUSD", clock="+120"))
    quotes = [p.msg for p in out if isinstance(p.msg, Quote)]
    trades = [p.msg for p in out if isinstance(p.msg, Trade)]
    assert {p.kind for p in out if isinstance(p.msg, Quote)} == {"book"}
    assert {p.kind for p in out if isinstance(p.msg, Trade)} == {"trades"}
    assert [(q.bid, q.ask) for q in quotes] == [
        (1.1, 1.1002),
        (1.1001, 1.1002),
        (1.1001, 1.1003),
        (1.1, 1.1001),
    ]
    assert quotes[0].ts_event == (t - 120 * 60_000) * 1_000_000
    # The first tick has no previous mid: no side, no trade. Then up, up, down.
    assert [tr.side for tr in trades] == [Side.BUY, Side.BUY, Side.SELL]
    for tr in trades:
        assert tr.size == 1.0
        assert tr.size_kind is SizeKind.TICKS
        assert tr.side_source is SideSource.TICK_RULE
    assert trades[0].price == 1.10015  # the mid, on the tick grid
    assert [tr.trade_id for tr in trades] == [f"{t}.1", f"{t + 1}.0", f"{t + 2}.0"]


def test_real_eurusd_quotes_give_only_estimated_tick_volume() -> None:
    quotes = data.eurusd_quotes()
    ticks = data.fx_ticks(quotes)
    parser = Mt5Parser(load_registry())
    out = parser.parse(0, _frame(ticks, "EURUSD"))
    trades = [p.msg for p in out if isinstance(p.msg, Trade)]
    n_quotes = sum(isinstance(p.msg, Quote) for p in out)
    assert len(ticks) == 9_500
    assert len(trades) + parser.counts["unclassified"] == len(ticks)
    assert parser.counts["unclassified"] < 20  # only until the mid first moves
    assert all(t.size_kind is SizeKind.TICKS and t.size == 1.0 for t in trades)
    assert all(t.side_source is SideSource.TICK_RULE for t in trades)
    changes = sum(1 for i, q in enumerate(quotes) if i == 0 or q[1:] != quotes[i - 1][1:])
    assert n_quotes == changes  # a Quote per bid/ask change, none for a repeated quote
    buys = sum(t.side is Side.BUY for t in trades)
    assert 0.3 < buys / len(trades) < 0.7  # no structural sell bias (seed bug §19.15)


@pytest.mark.parametrize("mode", ["exchange", "none", "both", "mixed"])
def test_real_trades_take_the_flagged_side_else_an_estimate(mode: data.FlagMode) -> None:
    script = data.exchange_ticks(data.binance_events()[:4000], mode=mode)
    parser = Mt5Parser(load_registry())
    trades = [
        p.msg for p in parser.parse(0, _frame(script.ticks, "BTCUSDT")) if isinstance(p.msg, Trade)
    ]
    assert {t.trade_id for t in trades} <= set(script.truth)
    by_source = {s: [t for t in trades if t.side_source is s] for s in SideSource}
    if mode == "exchange":
        assert len(trades) == len(script.truth)
        assert all(t.side == script.truth[t.trade_id] for t in trades)
        assert len(by_source[SideSource.EXCHANGE]) == len(trades)
    elif mode in ("none", "both"):
        assert not by_source[SideSource.EXCHANGE]  # both flags set = unknown, never a guess
        assert by_source[SideSource.TICK_RULE]  # the default rule (docs/mt5.md accuracy)
    else:
        exchange = by_source[SideSource.EXCHANGE]
        assert exchange
        assert all(t.side == script.truth[t.trade_id] for t in exchange)
    assert all(t.size_kind is SizeKind.REAL and t.size > 0 for t in trades)
