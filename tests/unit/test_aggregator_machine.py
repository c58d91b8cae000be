"""The trade state machine, table-driven: every transition, timeout and rejection reason, with
expected prices, stops and P&L computed here from the README's rules; then a hypothesis property
test over random bars, patterns and frames (never wedges, never two trades, fills only at
prices the bar traded, P&L equal to the reported prices)."""

from __future__ import annotations

from collections.abc import Sequence

import hypothesis
import pytest
from hypothesis import given, settings, strategies as st
from msgspec.structs import replace

from of_aggregator.framing import Frame, QualifiedLevel
from of_aggregator.machine import BarView, MachineParams, MachineState, Phase, TradeMachine
from of_aggregator.scoring import Risk
from ofcommon.messages import Direction, PatternSignal, TradeEvent

S = 1_000_000_000
MIN = 60 * S
T0 = 1_700_006_400 * S  # a multiple of the property test's 4 h sessions
SESSION_END = T0 + 600 * MIN
LONG, SHORT = Direction.LONG, Direction.SHORT

VAL = QualifiedLevel("val", 100.0, LONG, 50.0, ("d1",))
VAH = QualifiedLevel("vah", 150.0, SHORT, 50.0, ("d1",))
POC = QualifiedLevel("poc", 120.0, LONG, 30.0, ("d1",))


def mkframe(
    direction: Direction = LONG,
    confidence: float = 60.0,
    vah: float = 150.0,
    val: float = 100.0,
    levels: Sequence[QualifiedLevel] | None = None,
    warnings: tuple[str, ...] = (),
    sid: str = "d1",
) -> Frame:
    lv = (VAL, VAH, POC) if levels is None else tuple(levels)
    return Frame(sid, T0, "p_shape", direction, confidence, 120.0, vah, val, warnings, (), lv)


def bar(
    i: int, low: float, high: float, close: float | None = None, open_: float | None = None
) -> BarView:
    c = (low + high) / 2 if close is None else close
    o = c if open_ is None else open_
    return BarView(T0 + i * MIN, T0 + (i + 1) * MIN, o, high, low, c, SESSION_END)


def pat(
    i: int, kind: str, direction: Direction, strength: float, price: float, sub: int = 1
) -> PatternSignal:
    # a pattern arrives just after the close of bar i
    return PatternSignal(
        f"{kind}-{i}-{sub}", T0 + (i + 1) * MIN + sub, kind, direction, price, strength
    )


class Run:
    """One machine and the events it emitted."""

    def __init__(self, frame: Frame | None = None, params: MachineParams | None = None) -> None:
        self.m = TradeMachine("X", 1.0, 8.0, params)
        self.s = MachineState()
        self.events: list[TradeEvent] = []
        if frame is not None:
            self.events += self.m.on_frame(self.s, frame)

    def bar(self, b: BarView) -> list[TradeEvent]:
        out = self.m.on_bar(self.s, b)
        self.events += out
        return out

    def pat(self, p: PatternSignal) -> list[TradeEvent]:
        out = self.m.on_pattern(self.s, p)
        self.events += out
        return out

    def phase(self) -> Phase:
        return self.s.phase

    def kinds(self, out: list[TradeEvent]) -> list[tuple[str, str]]:
        return [(e.kind, e.reason) for e in out]


def watching_val() -> Run:
    r = Run(mkframe())
    assert r.kinds(r.bar(bar(0, 105.0, 110.0, 106.0))) == [("watch", "val")]
    assert r.phase() is Phase.WATCHING
    return r


def entered() -> Run:
    """LONG at VAL: close 104; SL = min(100 - 0.1 x 50, 104 - 4) = 95; TP = VAH 150."""
    r = watching_val()
    r.bar(bar(1, 101.0, 106.0, 104.0))
    (e,) = r.pat(pat(1, "absorption", LONG, 80.0, 101.0))
    assert (e.kind, e.price, e.stop, e.target) == ("entry", 104.0, 95.0, 150.0)
    return r


# --- watching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "params", "low", "high", "expected"),
    [
        (
            mkframe(),
            None,
            105.0,
            110.0,
            [("watch", "val")],
        ),  # 105 - 8 (one row of 8 ticks) reaches VAL 100
        (mkframe(), None, 108.5, 110.0, []),  # 8.5 ticks away
        (mkframe(), None, 145.0, 149.0, []),  # VAH is a SHORT level: not under a LONG bias
        (mkframe(), MachineParams(counter_bias=True), 145.0, 149.0, [("watch", "vah")]),
        (mkframe(Direction.NEUTRAL), None, 145.0, 149.0, [("watch", "vah")]),  # neutral: both
        (mkframe(), None, 118.0, 121.0, []),  # POC strength 30 < 50
        (None, None, 105.0, 110.0, []),  # no frame, nothing to watch
    ],
)
def test_watch(
    frame: Frame | None,
    params: MachineParams | None,
    low: float,
    high: float,
    expected: list[tuple[str, str]],
) -> None:
    r = Run(frame, params)
    assert r.kinds(r.bar(bar(0, low, high))) == expected
    assert r.phase() is (Phase.WATCHING if expected else Phase.IDLE)


def test_watch_timeout_and_rewatch_cooldown() -> None:
    r = watching_val()  # watched at the close of bar 0 (T0 + 1 min); timeout 30 min
    assert r.bar(bar(20, 105.0, 110.0)) == []
    (c,) = r.bar(bar(31, 120.0, 125.0))
    assert (c.kind, c.reason, c.ts_event) == ("cancel", "watch_expired", T0 + MIN + 30 * MIN)
    # the level is not watched again for the 300 s watch cooldown after the expiry
    assert r.bar(bar(33, 105.0, 110.0)) == []
    assert r.kinds(r.bar(bar(37, 105.0, 110.0))) == [("watch", "val")]


def test_session_end_ends_a_watch() -> None:
    r = watching_val()
    nxt = BarView(
        SESSION_END, SESSION_END + MIN, 130.0, 131.0, 129.0, 130.0, SESSION_END + 1440 * MIN
    )
    out = r.bar(nxt)
    assert r.kinds(out) == [("cancel", "session_end")]
    assert out[0].ts_event == SESSION_END


def test_new_frame_without_the_level_ends_the_watch() -> None:
    r = watching_val()
    out = r.m.on_frame(r.s, mkframe(levels=(VAH,), sid="d2"))
    assert r.kinds(out) == [("bias", "p_shape"), ("cancel", "levels_changed")]
    assert r.phase() is Phase.IDLE
    # the same level framed again keeps the watch
    r2 = watching_val()
    assert r2.kinds(r2.m.on_frame(r2.s, mkframe(sid="d2"))) == [("bias", "p_shape")]
    assert r2.phase() is Phase.WATCHING


def test_sweep_alerts_only_with_its_cooldown() -> None:
    r = watching_val()
    assert r.kinds(r.pat(pat(0, "sweep", SHORT, 60.0, 99.0))) == [("alert", "sweep")]
    assert r.phase() is Phase.WATCHING
    assert r.s.trade is None
    assert r.pat(pat(0, "sweep", SHORT, 60.0, 99.0, sub=10 * S)) == []  # within 60 s
    assert r.kinds(r.pat(pat(0, "sweep", SHORT, 60.0, 99.0, sub=61 * S))) == [("alert", "sweep")]


# --- entries and rejections --------------------------------------------------------------------


def test_entry_score_grade_and_levels() -> None:
    r = entered()
    e = r.events[-1]
    # 0.30 x 80 (absorption) + 0.25 x 50 (VAL) + 0.20 x 60 (aligned bias) = 48.5 -> C
    assert e.score == pytest.approx(48.5)
    assert e.grade == "C"
    assert (e.level_kind, e.level_price, e.signals) == ("val", 100.0, ["absorption-1-1"])
    assert r.phase() is Phase.POSITION_OPEN


def test_supporting_patterns_add_to_the_score_and_grade() -> None:
    r = watching_val()
    r.bar(bar(1, 101.0, 106.0, 104.0))
    r.pat(pat(1, "sweep", LONG, 100.0, 99.0))  # an alert, and support for the entry
    r.pat(pat(1, "divergence", LONG, 80.0, 99.0, sub=2))
    (e,) = r.pat(pat(1, "absorption", LONG, 100.0, 101.0, sub=3))
    # 30 + 12.5 + 12 + 0.20 x 100 (sweep) + 0.25 x 80 (divergence) = 94.5 -> A+
    assert e.kind == "entry"
    assert e.score == pytest.approx(94.5)
    assert e.grade == "A+"
    assert sorted(e.signals) == ["absorption-1-3", "divergence-1-2", "sweep-1-1"]


@pytest.mark.parametrize(
    ("frame", "params", "close", "strength", "reason"),
    [
        # 0.3 x 20 + 12.5 + 12 = 30.5 < 40
        (mkframe(), None, 104.0, 20.0, "score_below_min:30.5<40"),
        # TP = VAH 102 is below the entry 104
        (mkframe(vah=102.0, levels=(VAL,)), None, 104.0, 80.0, "target_not_beyond_entry"),
        # SL = min(100 - 1, 100) = 99, risk 5, reward 110 - 104 = 6: 1.2 < 1.5
        (mkframe(vah=110.0, levels=(VAL,)), None, 104.0, 80.0, "reward_risk_below_min:1.20<1.5"),
        # no minimum stop distance and an entry under the level's stop (100 - 5 = 95)
        (
            mkframe(),
            MachineParams(risk=Risk(min_stop_ticks=0)),
            94.0,
            80.0,
            "stop_not_beyond_entry",
        ),
        # a VAH-rejection warning costs a LONG 10: 48.5 - 10 = 38.5
        (mkframe(warnings=("vah_rejection",)), None, 104.0, 80.0, "score_below_min:38.5<40"),
    ],
)
def test_entry_rejections(
    frame: Frame, params: MachineParams | None, close: float, strength: float, reason: str
) -> None:
    r = Run(frame, params)
    r.bar(bar(0, 105.0, 110.0))
    assert r.phase() is Phase.WATCHING
    r.bar(bar(1, min(close, 101.0), 106.0, close))
    (e,) = r.pat(pat(1, "absorption", LONG, strength, 101.0))
    assert (e.kind, e.reason) == ("entry_rejected", reason)
    assert r.phase() is Phase.WATCHING
    assert r.s.trade is None


def test_against_bias_rejection_when_the_frame_turns() -> None:
    r = watching_val()
    r.m.on_frame(r.s, mkframe(SHORT, sid="d2"))  # VAL still framed: the watch stays
    r.bar(bar(1, 101.0, 106.0, 104.0))
    (e,) = r.pat(pat(1, "absorption", LONG, 80.0, 101.0))
    assert (e.kind, e.reason) == ("entry_rejected", "against_bias")


@pytest.mark.parametrize(
    ("kind", "direction", "price"),
    [
        ("absorption", SHORT, 101.0),  # the wrong side for a VAL
        ("absorption", LONG, 109.5),  # 9.5 ticks from the level
        ("initiative", LONG, 101.0),  # nothing to manage
        ("exhaustion", SHORT, 101.0),
    ],
)
def test_patterns_that_do_not_enter(kind: str, direction: Direction, price: float) -> None:
    r = watching_val()
    r.bar(bar(1, 101.0, 106.0, 104.0))
    assert r.pat(pat(1, kind, direction, 90.0, price)) == []
    assert r.phase() is Phase.WATCHING


def test_absorption_cooldown_after_a_rejection() -> None:
    r = watching_val()
    r.bar(bar(1, 101.0, 106.0, 104.0))
    assert r.pat(pat(1, "absorption", LONG, 20.0, 101.0))[0].kind == "entry_rejected"
    assert r.pat(pat(1, "absorption", LONG, 80.0, 101.0, sub=30 * S)) == []  # 30 s cooldown
    assert r.pat(pat(1, "absorption", LONG, 80.0, 101.0, sub=30 * S + 1))[0].kind == "entry"


def test_never_two_trades() -> None:
    r = entered()
    assert r.pat(pat(1, "absorption", LONG, 90.0, 101.0, sub=100 * S)) == []
    assert r.bar(bar(2, 103.0, 106.0)) == []  # near VAL again: no watch while a trade is open
    assert sum(e.kind == "entry" for e in r.events) == 1


# --- management and exits ----------------------------------------------------------------------


def test_break_even_then_trail_only_tightening() -> None:
    r = entered()
    r.bar(bar(2, 104.0, 112.0, 111.0))
    (be,) = r.pat(pat(2, "initiative", LONG, 60.0, 111.0))
    assert (be.kind, be.stop) == ("breakeven", 104.0)
    assert r.phase() is Phase.BREAK_EVEN
    r.bar(bar(3, 109.0, 118.0, 117.0))
    (tr,) = r.pat(pat(3, "initiative", LONG, 60.0, 117.0))
    assert (tr.kind, tr.stop) == ("trail", 109.0)  # the candle's low
    assert r.phase() is Phase.TRAILING
    r.bar(bar(4, 110.0, 118.0, 115.0))
    assert r.pat(pat(4, "initiative", SHORT, 60.0, 115.0, sub=2)) == []  # the other side
    (tr2,) = r.pat(pat(4, "initiative", LONG, 60.0, 115.0, sub=3))
    assert (tr2.kind, tr2.stop) == ("trail", 110.0)
    assert r.pat(pat(4, "initiative", LONG, 60.0, 115.0, sub=4)) == []  # same low: no move
    (x,) = r.bar(bar(5, 108.0, 116.0, 110.0, open_=115.0))
    assert (x.kind, x.reason, x.price) == ("exit", "trailing_stop", 110.0)
    assert x.pnl_ticks == 110.0 - 104.0
    assert x.r_multiple == pytest.approx((110.0 - 104.0) / (104.0 - 95.0))
    assert x.mfe_ticks == 118.0 - 104.0
    assert x.mae_ticks == 0.0  # never traded below the entry after it


@pytest.mark.parametrize(
    ("open_", "low", "high", "reason", "price"),
    [
        (100.0, 94.0, 101.0, "stop_loss", 95.0),
        (93.0, 90.0, 96.0, "stop_loss", 93.0),  # gapped through the stop: filled at the open
        (140.0, 139.0, 151.0, "take_profit", 150.0),
        (152.0, 149.0, 155.0, "take_profit", 152.0),  # gapped through the target
        (120.0, 94.0, 151.0, "stop_loss", 95.0),  # both in one bar: the stop
    ],
)
def test_stop_and_target_touched_by_a_trade(
    open_: float, low: float, high: float, reason: str, price: float
) -> None:
    r = entered()
    (x,) = r.bar(bar(2, low, high, (low + high) / 2, open_=open_))
    assert (x.kind, x.reason, x.price) == ("exit", reason, price)
    assert x.pnl_ticks == price - 104.0
    assert x.r_multiple == pytest.approx((price - 104.0) / 9.0)
    assert r.phase() is Phase.IDLE
    assert r.s.trade is None


@pytest.mark.parametrize(
    ("kind", "strength", "expected"),
    [
        ("exhaustion", 75.0, ("exit", "exhaustion")),
        ("divergence", 70.0, ("exit", "divergence")),
        ("exhaustion", 69.0, ("exit_warning", "exhaustion")),
        ("divergence", 50.0, ("exit_warning", "divergence")),
    ],
)
def test_opposite_exhaustion_or_divergence(
    kind: str, strength: float, expected: tuple[str, str]
) -> None:
    r = entered()
    r.bar(bar(2, 104.0, 112.0, 110.0))
    assert r.pat(pat(2, kind, LONG, 90.0, 112.0)) == []  # same side: nothing
    (e,) = r.pat(pat(2, kind, SHORT, strength, 112.0, sub=2))
    assert (e.kind, e.reason, e.price) == (*expected, 110.0)  # at the last traded close
    if e.kind == "exit":
        assert e.pnl_ticks == 6.0
    else:  # a second warning of the kind waits out its cooldown
        assert r.pat(pat(2, kind, SHORT, strength, 112.0, sub=3)) == []
        assert r.phase() is Phase.POSITION_OPEN


def test_session_end_exits_at_the_last_price() -> None:
    r = entered()
    r.bar(bar(2, 104.0, 112.0, 108.0))
    (x,) = r.m.on_time(r.s, SESSION_END)
    assert (x.kind, x.reason, x.price, x.ts_event) == ("exit", "session_end", 108.0, SESSION_END)
    assert r.s.trade is None


def test_session_end_through_the_next_session_bar() -> None:
    r = entered()
    r.bar(bar(2, 104.0, 112.0, 108.0))
    nxt = BarView(
        SESSION_END + 5 * MIN,
        SESSION_END + 6 * MIN,
        90.0,
        91.0,
        80.0,
        85.0,
        SESSION_END + 1440 * MIN,
    )
    out = r.bar(nxt)
    assert (out[0].kind, out[0].reason, out[0].price) == ("exit", "session_end", 108.0)


def test_max_hold() -> None:
    r = entered()  # entry at T0 + 2 min; max hold 4 h
    r.bar(bar(100, 104.0, 112.0, 108.0))
    # the entry was at T0 + 2 min + 1 ns: bar 241 closes 1 ns before 4 h, bar 242 after
    assert r.bar(bar(241, 105.0, 110.0, 107.0)) == []
    (x,) = r.bar(bar(242, 105.0, 110.0, 107.0))
    assert (x.kind, x.reason, x.price) == ("exit", "max_hold", 107.0)


def test_event_ids_are_deterministic_and_unique() -> None:
    a, b = entered(), entered()
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    assert len({e.event_id for e in a.events}) == len(a.events)
    assert {e.trade_id for e in a.events if e.kind != "bias"} == {f"X-{T0 + MIN}"}


# --- the property test -------------------------------------------------------------------------

KINDS = (
    "absorption",
    "initiative",
    "sweep",
    "exhaustion",
    "divergence",
    "absorption",
    "initiative",
)
Step = tuple[str, int, int, int, int]


@st.composite
def steps(draw: st.DrawFn) -> list[Step]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(("bar", "bar", "bar", "pattern", "pattern", "pattern", "frame")),
                st.integers(-6, 6),  # price move / pattern offset in ticks
                st.integers(0, 4),  # kind / direction selector
                st.integers(0, 100),  # strength / range
                st.sampled_from((1, 1, 1, 2, 5, 30, 90)),  # minutes to the next bar
            ),
            min_size=30,
            max_size=150,
        )
    )


@settings(max_examples=300, deadline=None)
@given(steps())
def test_property_never_wedges_never_two_trades_fills_traded(seq: list[Step]) -> None:
    m = TradeMachine("X", 1.0, 8.0)
    s = MachineState()
    price, t = 110.0, T0
    bars: list[BarView] = []
    open_entry: TradeEvent | None = None
    session = 240 * MIN

    def check(out: list[TradeEvent], window: list[BarView]) -> None:
        nonlocal open_entry
        for e in out:
            kinds_seen.append(e.kind)
            if e.kind in ("entry", "exit"):
                assert any(b.low <= e.price <= b.high for b in window), (e, window)
            if e.kind == "entry":
                assert open_entry is None  # never two trades
                open_entry = e
            elif e.kind == "exit":
                assert open_entry is not None
                assert e.trade_id == open_entry.trade_id
                assert e.pnl_ticks == pytest.approx(
                    (e.price - open_entry.price) * open_entry.direction
                )
                risk = (open_entry.price - open_entry.stop) * open_entry.direction
                assert e.r_multiple == pytest.approx(e.pnl_ticks / risk, abs=1e-6)  # 6 decimals
                # a trade never outlives its session
                assert e.ts_event <= (open_entry.ts_event // session + 1) * session
                open_entry = None
        assert s.phase is not Phase.ABSORPTION_DETECTED
        assert (s.trade is not None) == (open_entry is not None)

    kinds_seen: list[str] = []
    first = ("frame", 0, 0, 80, 1)  # a LONG frame (confidence 80) around the start price
    for kind, move, sel, strength, gap in [first, *seq]:
        if kind == "bar":
            t += gap * MIN
            lo = price + min(move, 0) - strength % 5
            hi = price + max(move, 0) + strength % 5
            b = BarView(
                t - MIN, t, price, hi, lo, price + move, (t - MIN) // session * session + session
            )
            price = b.close
            window = [*bars[-1:], b]
            bars.append(b)
            check(m.on_bar(s, b), window)
        elif kind == "pattern":
            d = LONG if sel % 2 else SHORT
            at = price + move
            if s.watch is not None and sel < 4:
                # mostly at the watched level and on its side, so that entries happen
                d, at = s.watch.level.direction, s.watch.level.price + move // 2
            elif s.trade is not None and sel < 3:
                d = s.trade.direction  # mostly with the trade: break-evens and trails
            t += 1
            name = KINDS[(sel + strength) % len(KINDS)]
            p = PatternSignal(f"p{t}{sel}", t, name, d, at, float(strength))
            check(m.on_pattern(s, p), bars[-1:])
        else:
            f = mkframe(
                (LONG, SHORT, Direction.NEUTRAL)[sel % 3],
                float(strength),
                vah=price + 10 + move,
                val=price - 10 + move,
                levels=(
                    QualifiedLevel("val", price - 10 + move, LONG, 50.0 + sel * 5, ()),
                    QualifiedLevel("vah", price + 10 + move, SHORT, 50.0 + sel * 5, ()),
                ),
                sid=str(t),
            )
            check(m.on_frame(s, replace(f, ts_event=t)), bars[-1:])
    # the session's end ends everything
    end = (t // session + 1) * session
    check(m.on_time(s, end), bars[-1:])
    for k in ("entry", "exit", "breakeven", "trail", "entry_rejected", "cancel"):
        hypothesis.event(f"saw {k}", str(k in kinds_seen))
    assert s.trade is None
    assert s.watch is None
    assert s.phase is Phase.IDLE


def test_a_new_frame_at_the_session_end_closes_the_trade_first() -> None:
    r = entered()
    r.bar(bar(2, 104.0, 112.0, 108.0))  # the session's last bar, long before its end
    out = r.m.on_frame(r.s, replace(mkframe(sid="d2"), ts_event=SESSION_END))
    assert r.kinds(out) == [("exit", "session_end"), ("bias", "p_shape")]
    assert (out[0].price, out[0].ts_event) == (108.0, SESSION_END)
