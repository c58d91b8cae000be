"""Volume profiles: seed golden vector, value-area modes and ties, nodes, shape, naked POCs.
Hypothesis checks the value area against an independent two-row implementation written here.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from tests.support.fake_mt5_data import eurusd_quotes, fx_ticks, parse_ticks

from of_analytics.fold import AnalyticsFold, AnalyticsState
from of_analytics.profile import (
    NodeMode,
    PocTieRule,
    ProfileConfig,
    ProfileStats,
    SessionProfiler,
    ValueAreaMode,
    compute_stats,
    poc_index,
    row_of,
    value_area,
)
from ofcommon.instruments import Instrument, Registry, RegistryConfigError, load_registry
from ofcommon.messages import ProfileUpdate, Side, SizeKind, Trade

NAS = Instrument(
    symbol="NAS100USDT", group="indices", tick_size=0.1, row_size=1.0, session="NY_CASH"
)
BTC = Instrument(
    symbol="BTCUSDT", group="crypto", tick_size=0.01, row_size=10.0, session="FULL_DAY"
)
UNIT = Instrument(symbol="UNIT", group="crypto", tick_size=1.0, row_size=1.0, session="FULL_DAY")


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC wall time -> ns since the epoch."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1_000_000_000


def trade(
    ts: int, price: float, size: float, kind: SizeKind = SizeKind.REAL, side: Side = Side.BUY
) -> Trade:
    return Trade(ts, ts, price, size, side, f"{ts}-{price}", size_kind=kind)


def stats_of(
    vap: Mapping[int, float],
    cfg: ProfileConfig | None = None,
    periods: Mapping[int, tuple[int, int]] | None = None,
) -> ProfileStats:
    return compute_stats(vap, 1.0, 1, cfg or ProfileConfig(), periods)


# --- the seed's golden vector (§20.1): NAS100, row 1.0 ---------------------------------------


def _golden_trades() -> list[Trade]:
    t0 = ns(2024, 1, 16, 15)  # 10:00 New York, inside NY_CASH
    out: list[Trade] = []
    for count, price, size in ((100, 18500, 10), (50, 18490, 5), (50, 18510, 5)):
        out += [trade(t0 + i, price, size) for i in range(count)]
    out += [trade(t0 + 1000 + i, 18470, 1, side=Side.SELL) for i in range(5)]
    out += [trade(t0 + 2000 + i, 18530, 1) for i in range(5)]
    return out


def test_golden_vector_seed_mode() -> None:
    p = SessionProfiler(NAS, ProfileConfig.seed())
    for t in _golden_trades():
        assert p.on_trade(t) == []
    s = p.stats()
    assert (s.volume, s.poc, s.vah, s.val) == (1510, 18500, 18510, 18500)
    assert s.lvn == ()
    assert s.shape == "d_shape"
    assert s.poc_pct == 0.5


def test_golden_vector_default_two_row() -> None:
    p = SessionProfiler(NAS)
    for t in _golden_trades():
        p.on_trade(t)
    (u, comp) = p.developing()
    assert (u.scope, u.session_id, u.poc, u.vah, u.val, u.volume) == (
        "session",
        "2024-01-16",
        18500.0,
        18510.0,
        18500.0,
        1510.0,
    )
    assert u.rows == [(18470.0, 5.0), (18490.0, 250.0), (18500.0, 1000.0), (18510.0, 250.0),
                      (18530.0, 5.0)]  # fmt: skip
    assert not u.final
    assert u.shape == "d_shape"  # 250-lot side peaks stay below 1.5 x the mean traded row
    assert comp.scope == "composite:3"
    assert comp.volume == 1510


# --- rows ------------------------------------------------------------------------------------


def test_row_mapping_is_robust_to_float_noise() -> None:
    assert row_of(18500.300000000003, 0.1, 10) == 18500
    assert row_of(18500.299999999997, 0.1, 1) == 185003
    assert row_of(0.30000000000000004, 0.1, 1) == 3
    assert row_of(43215.37, 0.01, 1000) == 4321
    p = SessionProfiler(BTC)
    p.on_trade(trade(ns(2024, 1, 2, 1), 43219.99, 1.5))
    p.on_trade(trade(ns(2024, 1, 2, 1), 43210.00, 0.5))
    assert p.developing()[0].rows == [(43210.0, 2.0)]


# --- value-area modes, hand-made vectors -----------------------------------------------------


def test_two_row_adds_larger_pair() -> None:
    # POC 10; pair above 3 + 4 = 7 beats pair below 2 + 3 = 5; 17 >= 16.8
    assert value_area([1, 2, 3, 10, 3, 4, 1], 3, 0.70, 2) == (3, 5)


def test_two_row_tie_goes_up() -> None:
    # pairs 4 + 1 and 1 + 4 tie: the upper pair is added; 15 >= 14
    assert value_area([1, 4, 10, 4, 1], 2, 0.70, 2) == (2, 4)


def test_one_row_tie_goes_up_and_exact_target_stops() -> None:
    # 10 + 4 = 14 is exactly 70 % of 20: no further row is added
    assert value_area([1, 4, 10, 4, 1], 2, 0.70, 1) == (2, 3)


def test_exhausted_side_lets_the_other_grow() -> None:
    assert value_area([10, 3, 3, 3], 0, 0.70, 2) == (0, 2)
    assert value_area([3, 3, 10], 2, 0.90, 2) == (0, 2)


def test_seed_mode_skips_untraded_rows_default_does_not() -> None:
    vap = {0: 10.0, 5: 6.0, -1: 5.0}
    seed = stats_of(vap, ProfileConfig.seed())
    assert (seed.val, seed.poc, seed.vah) == (0, 0, 5)  # 6 above beats 5 below: levels adjacent
    one = stats_of(vap, ProfileConfig(va_mode=ValueAreaMode.ONE_ROW, value_area_pct=0.68))
    assert (one.val, one.poc, one.vah) == (-1, 0, 0)  # row 1 is empty: 0 < 5 below


def test_poc_ties() -> None:
    # equidistant from the midpoint, equal volume each side: the lower
    assert poc_index([5, 1, 5]) == 0
    # nearest the midpoint
    assert poc_index([5, 1, 5, 2]) == 2
    # equidistant: the side with more volume (above: 2 + 5 > 5 + 1)
    assert poc_index([5, 1, 2, 5]) == 3
    assert poc_index([5, 1, 2, 5], PocTieRule.LOWEST) == 0
    assert stats_of({0: 5, 1: 1, 2: 2, 3: 5}, ProfileConfig.seed()).poc == 0


def test_developing_poc_follows_trades() -> None:
    p = SessionProfiler(UNIT)
    t0 = ns(2024, 1, 2, 1)
    rng = random.Random(7)
    for i in range(300):
        p.on_trade(trade(t0 + i, float(rng.randint(90, 110)), float(rng.randint(1, 3))))
        assert p.developing_poc == p.stats().poc


# --- property: the value area against an independent two-row rule ----------------------------


def reference_two_row(prices: list[int], vols: list[int], pct: float) -> tuple[int, int, int]:
    """A deliberately plain Dalton two-row rule on a dense ladder: (val, poc, vah) prices."""
    ladder = dict.fromkeys(range(min(prices), max(prices) + 1), 0)
    for p, v in zip(prices, vols, strict=True):
        ladder[p] += v
    keys = sorted(ladder)
    top = max(ladder.values())
    tied = [p for p in keys if ladder[p] == top]
    mid2 = keys[0] + keys[-1]
    dist = min(abs(2 * p - mid2) for p in tied)
    near = [p for p in tied if abs(2 * p - mid2) == dist]
    poc = near[0]
    if len(near) == 2:
        below = sum(v for p, v in ladder.items() if 2 * p < mid2)
        above = sum(v for p, v in ladder.items() if 2 * p > mid2)
        poc = near[1] if above > below else near[0]
    total = sum(ladder.values())
    inside = {poc}
    while sum(ladder[p] for p in inside) < pct * total * (1 - 1e-12):
        ups = [p for p in (max(inside) + 1, max(inside) + 2) if p in ladder]
        downs = [p for p in (min(inside) - 1, min(inside) - 2) if p in ladder]
        if not ups and not downs:
            break
        if ups and (not downs or sum(ladder[p] for p in ups) >= sum(ladder[p] for p in downs)):
            inside.update(ups)
        else:
            inside.update(downs)
    return min(inside), poc, max(inside)


profiles = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 50)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(profiles, st.sampled_from([0.68, 0.70, 0.80]))
def test_value_area_properties(cells: list[tuple[int, int]], pct: float) -> None:
    vap: dict[int, float] = {}
    for p, v in cells:
        vap[p] = vap.get(p, 0.0) + v
    s = stats_of(vap, ProfileConfig(value_area_pct=pct))
    assert s.va_volume >= pct * s.volume * (1 - 1e-9)
    assert s.val <= s.poc <= s.vah
    assert vap[int(s.poc)] == max(vap.values())
    assert (s.val, s.poc, s.vah) == reference_two_row(
        [p for p, _ in cells], [v for _, v in cells], pct
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(1, 9)), min_size=1, max_size=80),
    st.randoms(use_true_random=False),
    st.integers(1, 10),
)
def test_independent_of_order_and_batching(
    cells: list[tuple[int, int]], rnd: random.Random, every: int
) -> None:
    t0 = ns(2024, 1, 2, 1)
    trades = [trade(t0 + i * 1_000_000, 100.0 + p, float(v)) for i, (p, v) in enumerate(cells)]
    a = SessionProfiler(UNIT)
    for t in trades:
        a.on_trade(t)
    shuffled = trades[:]
    rnd.shuffle(shuffled)
    b = SessionProfiler(UNIT)
    for i, t in enumerate(shuffled):
        b.on_trade(t)
        if i % every == 0:
            b.developing()  # publishing at any rate must not change the result
    assert a.stats() == b.stats()
    close = ns(2024, 1, 3)
    assert a.on_time(close) == b.on_time(close)


# --- nodes, single prints, shape -------------------------------------------------------------


def test_hvn_lvn_smoothed() -> None:
    vols = [1, 5, 9, 5, 1, 0, 1, 6, 10, 6, 1]
    s = stats_of(dict(enumerate(map(float, vols))))
    assert s.hvn == (2.0, 8.0)
    assert s.lvn == (5.0,)


def test_lvn_seed_sigma_rule() -> None:
    s = stats_of({0: 10, 1: 10, 2: 1, 3: 10, 4: 10}, ProfileConfig.seed())
    assert s.lvn == (2.0,)
    assert s.hvn == ()
    assert stats_of({0: 10, 1: 10, 2: 1, 3: 10}, ProfileConfig.seed()).lvn == ()  # < 5 levels


def test_single_prints() -> None:
    periods = {0: (0, 4), 1: (4, 6)}
    s = stats_of({0: 1, 4: 2, 6: 1}, periods=periods)
    assert s.single_prints == (0.0, 1.0, 2.0, 3.0, 5.0, 6.0)
    assert stats_of({0: 1}, periods={0: (0, 3)}).single_prints == ()


def test_single_prints_from_trades() -> None:
    p = SessionProfiler(UNIT, ProfileConfig(period_ns=30 * 60 * 10**9))
    t0 = ns(2024, 1, 2)
    for price in (100, 101, 102, 103):
        p.on_trade(trade(t0, float(price), 1))
    p.on_trade(trade(t0 + 31 * 60 * 10**9, 103.0, 1))
    assert p.stats().single_prints == (100.0, 101.0, 102.0)


@pytest.mark.parametrize(
    ("vols", "shape"),
    [
        ([1, 1, 1, 1, 1, 1, 1, 1, 9, 1], "p_shape"),
        ([1, 9, 1, 1, 1, 1, 1, 1, 1, 1], "b_shape"),
        ([1, 2, 4, 6, 9, 6, 4, 2, 1, 1], "d_shape"),
        ([1, 8, 1, 1, 1, 1, 1, 1, 9, 1], "double_dist"),
    ],
)
def test_shape(vols: list[int], shape: str) -> None:
    assert stats_of(dict(enumerate(map(float, vols)))).shape == shape


def test_shape_uses_price_not_index() -> None:
    vap = {0: 1.0, 1: 1.0, 2: 9.0, 100: 1.0}
    assert stats_of(vap).shape == "b_shape"  # POC 2 % up the range
    assert stats_of(vap, ProfileConfig.seed()).shape == "p_shape"  # the seed's index: 2 / 3


def test_empty_profile() -> None:
    assert stats_of({}).shape == "unknown"
    assert SessionProfiler(UNIT).developing() == []


# --- sessions, DST, size kinds, composite, naked POCs ----------------------------------------


def test_session_rollover_across_dst() -> None:
    p = SessionProfiler(NAS)
    # Friday 2024-03-08, EST: 09:30 New York = 14:30 UTC, close 21:00 UTC
    assert p.on_trade(trade(ns(2024, 3, 8, 14, 0), 18000.0, 1)) == []
    assert p.out_of_hours == 1
    p.on_trade(trade(ns(2024, 3, 8, 14, 30), 18000.0, 2))
    (u,) = p.developing()[:1]
    assert (u.session_id, u.session_start, u.session_end) == (
        "2024-03-08",
        ns(2024, 3, 8, 14, 30),
        ns(2024, 3, 8, 21),
    )
    # Monday 2024-03-11, EDT after the weekend change: open 13:30 UTC
    finals = p.on_trade(trade(ns(2024, 3, 11, 13, 30), 18100.0, 3))
    assert [(f.scope, f.final, f.ts_event, f.volume) for f in finals] == [
        ("session", True, ns(2024, 3, 8, 21), 2.0),
        ("composite:3", True, ns(2024, 3, 8, 21), 2.0),
    ]
    s, comp = p.developing()
    assert (s.session_id, s.session_start, s.session_end) == (
        "2024-03-11",
        ns(2024, 3, 11, 13, 30),
        ns(2024, 3, 11, 20),
    )
    assert (s.volume, comp.volume, comp.session_start) == (3.0, 5.0, ns(2024, 3, 8, 14, 30))


def test_heartbeat_closes_and_late_trade_is_counted() -> None:
    p = SessionProfiler(UNIT)
    p.on_trade(trade(ns(2024, 1, 2, 5), 100.0, 1))
    assert p.on_time(ns(2024, 1, 2, 23)) == []
    finals = p.on_time(ns(2024, 1, 3))
    assert [f.final for f in finals] == [True, True]
    assert p.on_time(ns(2024, 1, 3, 1)) == []  # exactly once
    p.on_trade(trade(ns(2024, 1, 2, 6), 100.0, 1))
    assert p.late == 1
    assert p.developing() == []


def test_ticks_trades_are_kept_apart() -> None:
    t0 = ns(2024, 1, 2, 5)
    trades = [trade(t0, 100.0, 5), trade(t0, 101.0, 7, SizeKind.TICKS)]
    real, ticks = SessionProfiler(UNIT), SessionProfiler(UNIT, size_kind=SizeKind.TICKS)
    for t in trades:
        real.on_trade(t)
        ticks.on_trade(t)
    assert real.developing()[0].rows == [(100.0, 5.0)]
    assert ticks.developing()[0].rows == [(101.0, 7.0)]
    assert (real.ignored, ticks.ignored) == (1, 1)
    real.on_trade(trade(t0, 99.0, 0.0))  # a zero-size print adds no row
    assert real.developing()[0].rows == [(100.0, 5.0)]
    assert real.ignored == 2


def test_composite_over_n_sessions() -> None:
    p = SessionProfiler(UNIT, ProfileConfig(composite_sessions=2))
    for day, price in ((2, 100.0), (3, 110.0), (4, 120.0)):
        p.on_trade(trade(ns(2024, 1, day, 5), price, float(day)))
    _, comp = p.developing()
    assert comp.scope == "composite:2"
    assert comp.rows == [(110.0, 3.0), (120.0, 4.0)]
    assert comp.session_start == ns(2024, 1, 3)
    assert p.composite_stats().volume == 7.0
    single = SessionProfiler(UNIT, ProfileConfig(composite_sessions=1))
    single.on_trade(trade(ns(2024, 1, 2, 5), 100.0, 1))
    assert [u.scope for u in single.developing()] == ["session"]


def test_naked_poc_lifecycle() -> None:
    p = SessionProfiler(UNIT)
    p.on_trade(trade(ns(2024, 1, 2, 5), 100.0, 5))
    p.on_trade(trade(ns(2024, 1, 2, 6), 105.0, 1))
    assert p.naked_pocs == []  # the developing session has no naked POC yet
    finals = p.on_trade(trade(ns(2024, 1, 3, 5), 110.0, 5))
    assert finals[0].poc == 100.0
    assert [(n.session_id, n.price) for n in p.naked_pocs] == [("2024-01-02", 100.0)]
    p.on_trade(trade(ns(2024, 1, 3, 6), 100.0, 1, SizeKind.TICKS))  # not a real print
    p.on_trade(trade(ns(2024, 1, 4, 5), 120.0, 5))
    assert [(n.session_id, n.price) for n in p.naked_pocs] == [
        ("2024-01-02", 100.0),
        ("2024-01-03", 110.0),
    ]
    p.on_trade(trade(ns(2024, 1, 3, 7), 110.0, 1))  # late: belongs to a closed session
    assert len(p.naked_pocs) == 2
    # every published update carries them, with the nodes of its own histogram
    assert [u.naked_pocs for u in p.developing()] == [[100.0, 110.0], [100.0, 110.0]]
    p.on_trade(trade(ns(2024, 1, 4, 6), 100.4, 1))  # a print in the POC's row touches it
    assert [(n.session_id, n.price) for n in p.naked_pocs] == [("2024-01-03", 110.0)]
    session, composite = p.developing()
    assert session.naked_pocs == composite.naked_pocs == [110.0]
    stats, comp = p.stats(), p.composite_stats()
    assert (session.hvn, session.lvn, session.single_prints) == (
        list(stats.hvn),
        list(stats.lvn),
        list(stats.single_prints),
    )
    assert (composite.hvn, composite.lvn) == (list(comp.hvn), list(comp.lvn))


def test_seed_config_modes() -> None:
    cfg = ProfileConfig.seed()
    assert (cfg.value_area_pct, cfg.va_mode, cfg.node_mode) == (
        0.68,
        ValueAreaMode.SEED,
        NodeMode.SEED,
    )
    with pytest.raises(ValueError, match="value_area_pct"):
        ProfileConfig(value_area_pct=0)
    with pytest.raises(ValueError, match="smooth_rows"):
        ProfileConfig(smooth_rows=2)


# --- plateau-aware nodes (issue 8 §2.3) ------------------------------------------------------


def _middle_of_runs(vols: list[float], value: float) -> list[int]:
    """Middle row (the lower of two middles) of every run of ``value`` in ``vols``: a reference
    written out here, independent of the engine's smoothing and window."""
    out: list[int] = []
    i = 0
    while i < len(vols):
        if vols[i] == value:
            j = i
            while j + 1 < len(vols) and vols[j + 1] == value:
                j += 1
            out.append((i + j) // 2)
            i = j + 1
        else:
            i += 1
    return out


@pytest.mark.parametrize(
    "vols",
    [
        [10, 12, 14, 12, 10, 0, 0, 0, 0, 0, 10, 12, 14, 12, 10],  # the empty valley
        [10, 12, 14, 12, 10, 2, 2, 2, 2, 2, 2, 10, 12, 14, 12, 10],  # flat, even width
        [9, 12, 14, 12, 10, 0, 0, 0, 0, 0, 0, 0, 0, 10, 12, 14, 12, 9],  # far wider than 2k+1
    ],
)
def test_lvn_in_a_flat_valley_wider_than_the_window(vols: list[int]) -> None:
    # The 3-row smoothing narrows the flat floor by one row each side but keeps its middle where
    # the raw floor's is, so the raw profile is the reference.
    (expected,) = _middle_of_runs([float(v) for v in vols], float(min(vols)))
    assert stats_of(dict(enumerate(map(float, vols)))).lvn == (float(expected),)


def test_hvn_on_a_flat_top_is_its_middle_row() -> None:
    vols = [1.0, 2.0, 9.0, 9.0, 9.0, 9.0, 9.0, 2.0, 1.0, 0.0, 1.0, 2.0, 9.0, 9.0, 2.0, 1.0]
    # Smoothed over 3 rows the first top keeps its three middle rows flat (3..5), the second
    # (12, 13) none: its two rows stay tied at (2 + 9 + 9) / 3, so it is a flat top of two rows.
    first = (3 + 5) // 2
    second = (12 + 13) // 2
    s = stats_of(dict(enumerate(vols)))
    assert s.hvn == (float(first), float(second))
    assert s.lvn == (9.0,)


# --- pre-open prints after the open (issue 8 §2.5) -------------------------------------------


def test_pre_open_print_arriving_after_the_first_session_trade_is_out_of_hours() -> None:
    p = SessionProfiler(NAS)
    # Friday 2024-03-08, EST: the NY cash open is 14:30 UTC.
    inside = [trade(ns(2024, 3, 8, 14, 31), 18000.0, 2), trade(ns(2024, 3, 8, 14, 40), 18001.0, 3)]
    pre_open = trade(ns(2024, 3, 8, 14, 29), 17990.0, 7)  # arrives after the first in-hours trade
    p.on_trade(inside[0])
    p.on_trade(pre_open)
    p.on_trade(inside[1])
    assert (p.out_of_hours, p.late) == (1, 0)
    expected_rows = sorted((t.price, t.size) for t in inside)
    (session,) = p.developing(composite=False)
    assert session.rows == expected_rows
    assert session.volume == sum(t.size for t in inside)
    assert session.session_start == ns(2024, 3, 8, 14, 30)


# --- the registry's profile settings reach the engine (issue 8 §2.4) -------------------------


def _registry_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "instruments.toml"
    path.write_text(textwrap.dedent(body))
    return path


def _fold_profile(registry: Registry, symbol: str, trades: list[Trade]) -> ProfileUpdate:
    fold = AnalyticsFold(registry)
    state = fold.initial(symbol)
    for t in trades:
        fold.step(state, "trades", t)
    (session,) = state.profiler.developing(composite=False)
    return session


# BTCUSDT rows are 10 apart. From the POC (40) the lower pair (19 + 10) takes the area to 69 % of
# 100: enough for 68 %, one pair short of 70 %, which then adds the upper pair (13 + 7).
_VA_LADDER: Final = [(100, 7), (110, 10), (120, 19), (130, 40), (140, 13), (150, 7), (160, 4)]


def _ladder_trades(ladder: list[tuple[int, int]]) -> list[Trade]:
    t0 = ns(2024, 1, 2, 1)
    return [trade(t0 + i, float(p), float(v)) for i, (p, v) in enumerate(ladder)]


def test_registry_value_area_pct_is_honoured(tmp_path: Path) -> None:
    prices = [p // 10 for p, _ in _VA_LADDER]  # the reference works on a unit ladder
    vols = [v for _, v in _VA_LADDER]
    val68, poc68, vah68 = (10 * x for x in reference_two_row(prices, vols, 0.68))
    val70, _, vah70 = (10 * x for x in reference_two_row(prices, vols, 0.70))
    assert (val68, vah68) != (val70, vah70)  # the ladder tells the two apart
    path = _registry_file(
        tmp_path,
        """
        [instruments.BTCUSDT.profile]
        value_area_pct = 0.68
        """,
    )
    got = _fold_profile(load_registry(path), "BTCUSDT", _ladder_trades(_VA_LADDER))
    assert (got.val, got.poc, got.vah) == (val68, poc68, vah68)
    # The registry's default is the professional 70 %.
    default = _fold_profile(load_registry(), "BTCUSDT", _ladder_trades(_VA_LADDER))
    assert (default.val, default.vah) == (val70, vah70)


def _sigma_lvns(vols: list[float], factor: float) -> list[int]:
    """The seed's LVN rule written out: a local minimum below max(mean - f·σ, 0.2·mean)."""
    mean = sum(vols) / len(vols)
    std = (sum((v - mean) ** 2 for v in vols) / len(vols)) ** 0.5
    cut = max(mean - factor * std, 0.2 * mean)
    return [
        i for i in range(1, len(vols) - 1) if vols[i - 1] > vols[i] < vols[i + 1] and vols[i] < cut
    ]


def test_registry_lvn_stddev_factor_is_honoured_with_seed_nodes(tmp_path: Path) -> None:
    vols = [10.0, 10.0, 1.0, 10.0, 10.0, 6.0, 10.0, 10.0]
    ladder = [(100 + 10 * i, int(v)) for i, v in enumerate(vols)]
    expected = [float(100 + 10 * i) for i in _sigma_lvns(vols, 0.5)]
    assert expected != [float(100 + 10 * i) for i in _sigma_lvns(vols, 1.5)]
    path = _registry_file(
        tmp_path,
        """
        [instruments.BTCUSDT.profile]
        nodes = "seed"
        lvn_stddev_factor = 0.5
        """,
    )
    got = _fold_profile(load_registry(path), "BTCUSDT", _ladder_trades(ladder))
    assert got.lvn == expected


def test_registry_rejects_a_profile_field_the_engine_would_not_use(tmp_path: Path) -> None:
    path = _registry_file(
        tmp_path,
        """
        [instruments.BTCUSDT.profile]
        lvn_stddev_factor = 2.0
        """,
    )
    with pytest.raises(RegistryConfigError, match=r"lvn_stddev_factor.*nodes = .seed."):
        load_registry(path)


# --- tick-volume profiles of quote-only instruments (issue 8 §2.7) ---------------------------


def _fold_all(symbol: str, trades: list[Trade]) -> tuple[AnalyticsState, list[ProfileUpdate]]:
    fold = AnalyticsFold(load_registry())
    state = fold.initial(symbol)
    out: list[ProfileUpdate] = []
    for t in trades:
        out += [m for k, m, *_ in fold.step(state, "trades", t) if isinstance(m, ProfileUpdate)]
    return state, out


def test_real_eurusd_quotes_give_a_tick_volume_profile() -> None:
    registry = load_registry()
    eurusd = registry.get("EURUSD")
    trades = parse_ticks(registry, "EURUSD", fx_ticks(eurusd_quotes()))
    assert trades
    assert {t.size_kind for t in trades} == {SizeKind.TICKS}
    # HistData's 2020-01-01 17:00-23:00 EST: 22:00-04:00 UTC, across a FULL_DAY (UTC) boundary.
    midnight = ns(2020, 1, 2)
    tick, per_row = 0.00001, 50  # EURUSD's registry tick and 0.0005 row, written out

    def counts(ts: list[Trade]) -> dict[int, float]:
        out: dict[int, float] = {}
        for t in ts:
            row = round(t.price / tick) // per_row
            out[row] = out.get(row, 0.0) + t.size
        return out

    day1 = counts([t for t in trades if t.ts_event < midnight])
    day2 = counts([t for t in trades if t.ts_event >= midnight])
    assert day1
    assert day2
    state, updates = _fold_all("EURUSD", trades)

    def row(price: float) -> int:
        return round(price / eurusd.row_size)

    def check(u: ProfileUpdate, ref: dict[int, float]) -> None:
        assert u.volume_kind is SizeKind.TICKS
        assert {row(p): n for p, n in u.rows} == ref
        assert u.volume == sum(ref.values())
        rows = sorted(ref)
        val, poc, vah = reference_two_row(rows, [int(ref[r]) for r in rows], 0.70)
        assert (row(u.val), row(u.poc), row(u.vah)) == (val, poc, vah)

    (final,) = [u for u in updates if u.final and u.scope == "session"]
    assert final.session_id == "2020-01-01"
    check(final, day1)
    session, composite = state.profiler.developing()
    assert session.session_id == "2020-01-02"
    check(session, day2)
    both = {r: day1.get(r, 0.0) + day2.get(r, 0.0) for r in {*day1, *day2}}
    check(composite, both)
    day1_poc = row(final.poc)
    # Day 1's POC is naked unless a day-2 quote printed in its row.
    assert [row(p) for p in session.naked_pocs] == ([] if day1_poc in day2 else [day1_poc])


def test_followed_kind_switches_to_real_volume_for_good() -> None:
    p = SessionProfiler(UNIT, size_kind=None)
    day1, day2 = ns(2024, 1, 2, 5), ns(2024, 1, 3, 5)
    p.on_trade(trade(day1, 100.0, 1, SizeKind.TICKS))
    p.on_trade(trade(day1 + 1, 100.0, 1, SizeKind.TICKS))
    p.on_trade(trade(day2, 101.0, 1, SizeKind.TICKS))  # closes day 1, a tick-volume session
    session, composite = p.developing()
    assert (session.volume_kind, session.rows) == (SizeKind.TICKS, [(101.0, 1.0)])
    assert composite.rows == [(100.0, 2.0), (101.0, 1.0)]
    real = [trade(day2 + 1, 102.0, 0.5), trade(day2 + 2, 103.0, 2.5)]
    p.on_trade(real[0])
    p.on_trade(trade(day2 + 3, 104.0, 1, SizeKind.TICKS))  # a quote count beside real volume
    p.on_trade(real[1])
    session, composite = p.developing()
    expected = [(t.price, t.size) for t in real]
    assert (session.volume_kind, session.rows) == (SizeKind.REAL, expected)
    assert (composite.volume_kind, composite.rows) == (SizeKind.REAL, expected)  # no tick counts
    assert session.session_start == ns(2024, 1, 3)
    assert p.ignored == 1
    assert [n.price for n in p.naked_pocs] == [100.0]  # day 1's POC is still a price


def test_checkpoint_keeps_the_volume_kind() -> None:
    fold = AnalyticsFold(load_registry())
    state = fold.initial("EURUSD")
    t0 = ns(2024, 1, 2, 5)
    fold.step(state, "trades", trade(t0, 1.1, 1, SizeKind.TICKS))
    restored = fold.decode_state(fold.encode_state(state))
    fold.step(restored, "trades", trade(t0 + 1, 1.1006, 1, SizeKind.TICKS))  # the next row
    (session,) = restored.profiler.developing(composite=False)
    assert session.volume_kind is SizeKind.TICKS
    assert sorted(n for _, n in session.rows) == [1.0, 1.0]
    # A snapshot from before the field holds a real-volume profile: it stays real.
    btc = fold.initial("BTCUSDT")
    fold.step(btc, "trades", trade(t0, 42000.0, 0.5))
    old = msgspec.structs.replace(btc.profiler.to_state(), size_kind=None)
    btc.profiler.restore(old)
    fold.step(btc, "trades", trade(t0 + 1, 42000.0, 1, SizeKind.TICKS))
    (session,) = btc.profiler.developing(composite=False)
    assert (session.volume_kind, session.volume) == (SizeKind.REAL, 0.5)
