"""Profile framing: the shape table, multi-day context, qualified levels and merging, table-driven;
the seed's golden framing vector (spec §20.5) where the seed was right; real CME / Binance sessions
through the analytics profiler against a plain calculation written here."""

from __future__ import annotations

import csv
from decimal import Decimal

import msgspec
import pytest
from msgspec.structs import replace
from tests.support.binance_frames import binance_lines
from tests.support.real_data import BINANCE_SPOT, CME_ESH4_TRADES, require

from of_aggregator.framing import Frame, FramingParams, SessionProfile, frame
from of_analytics.profile import ProfileConfig, SessionProfiler
from ofcommon.instruments import Instrument, load_registry
from ofcommon.messages import Direction, ProfileUpdate, Side, Trade
from ofcommon.sessions import SESSIONS

CFG = FramingParams()
PROFILE = ProfileConfig()
DAY = 86_400 * 10**9


def sp(
    sid: str,
    poc: float,
    vah: float,
    val: float,
    shape: str,
    low: float | None = None,
    high: float | None = None,
    last: float = 0.0,
    lvn: tuple[float, ...] = (),
    naked: tuple[float, ...] = (),
) -> SessionProfile:
    lo = val - 10 if low is None else low
    hi = vah + 10 if high is None else high
    rows = tuple((float(p), 1.0) for p in range(int(lo), int(hi) + 1))
    return SessionProfile(sid, 0, poc, vah, val, lo, hi, shape, rows, lvn, naked, last)


def levels_of(f: Frame | None) -> dict[str, tuple[float, Direction, float]]:
    assert f is not None
    return {lv.kind: (lv.price, lv.direction, lv.strength) for lv in f.levels}


@pytest.mark.parametrize(
    ("shape", "poc", "direction", "confidence"),
    [
        # range 100..200: poc_pct = (poc - 100) / 100
        ("p_shape", 180.0, Direction.LONG, 40 + 30 * 0.8),
        ("b_shape", 120.0, Direction.SHORT, 40 + 30 * 0.8),
        ("d_shape", 150.0, Direction.NEUTRAL, 20.0),
        ("double_dist", 150.0, Direction.NEUTRAL, 30.0),
        ("unknown", 150.0, Direction.NEUTRAL, 20.0),
    ],
)
def test_shape_gives_direction_and_base_confidence(
    shape: str, poc: float, direction: Direction, confidence: float
) -> None:
    f = frame([sp("d1", poc, 170, 130, shape, low=100, high=200)], CFG, 1.0, PROFILE)
    assert f is not None
    assert f.direction is direction
    assert f.confidence == pytest.approx(confidence)


@pytest.mark.parametrize(
    ("shape", "prev", "cur", "direction", "confidence", "note"),
    [
        # (poc, vah, val) of the prior and latest session; range 0..1000 so poc_pct = poc / 1000
        ("p_shape", (500, 520, 480), (800, 830, 780), Direction.LONG, 40 + 24 + 15, "higher"),
        ("b_shape", (500, 520, 480), (200, 230, 180), Direction.SHORT, 40 + 24 + 15, "lower"),
        ("d_shape", (500, 520, 480), (510, 530, 490), Direction.LONG, 20 + 10, "higher"),
        ("d_shape", (500, 520, 480), (490, 510, 470), Direction.SHORT, 20 + 10, "lower"),
        # accepted higher does not turn a short day
        ("b_shape", (100, 120, 80), (200, 230, 180), Direction.SHORT, 40 + 24, "higher"),
        # POC up but VAH not: no acceptance
        ("d_shape", (500, 540, 480), (510, 530, 490), Direction.NEUTRAL, 20, None),
    ],
)
def test_value_accepted_higher_or_lower(
    shape: str,
    prev: tuple[float, float, float],
    cur: tuple[float, float, float],
    direction: Direction,
    confidence: float,
    note: str | None,
) -> None:
    a = sp("d1", *prev, "d_shape", low=0, high=1000)
    b = sp("d2", *cur, shape, low=0, high=1000)
    f = frame([a, b], CFG, 1.0, PROFILE)
    assert f is not None
    assert f.direction is direction
    assert f.confidence == pytest.approx(confidence)
    assert (f"value accepted {note}" in f.notes) is (note is not None)
    assert all(not n.startswith("value accepted") for n in f.notes) is (note is None)


@pytest.mark.parametrize(
    ("cur", "last", "warnings"),
    [
        # VAH held (within 0.1 x VA range 40 = 4 of the prior 120) after trading above, close below
        ((100, 121, 81, 85, 130), 110.0, ("vah_rejection", "bearish_hook")),
        # same VAH but the session never traded above the prior VAH: no rejection
        ((100, 121, 81, 85, 119), 110.0, ()),
        # closed above the prior VAH: accepted, not rejected
        ((100, 121, 81, 85, 130), 125.0, ()),
        # VAL held after trading below it, close back above
        ((100, 119, 79, 70, 115), 90.0, ("val_rejection", "bullish_hook")),
        # no last price known: the checks that need it do not run
        ((100, 121, 81, 85, 130), 0.0, ()),
    ],
)
def test_rejections_and_hooks(
    cur: tuple[float, float, float, float, float], last: float, warnings: tuple[str, ...]
) -> None:
    prev = sp("d1", 100, 120, 80, "d_shape", low=60, high=140)
    poc, vah, val, low, high = cur
    latest = sp("d2", poc, vah, val, "d_shape", low=low, high=high, last=last)
    f = frame([prev, latest], CFG, 1.0, PROFILE)
    assert f is not None
    assert f.warnings == warnings
    # a rejection warns; it never overrides the direction (seed defect §19.23)
    assert f.direction is Direction.NEUTRAL


@pytest.mark.parametrize(
    ("shape", "poc", "confidence"),
    [
        # range 70..150: a bullish hook (the auction below the prior VAL failed) cuts SHORT by 10
        ("b_shape", 92.0, 40 + 30 * (1 - 22 / 80) - 10),
        # and leaves a LONG bias as it is
        ("p_shape", 140.0, 40 + 30 * (70 / 80)),
    ],
)
def test_hook_reduces_an_opposite_bias(shape: str, poc: float, confidence: float) -> None:
    prev = sp("d1", 100, 130, 90, "d_shape", low=50, high=150)
    # VAL up, VAH down: neither acceptance rule fires
    latest = sp("d2", poc, 129, 91, shape, low=70, high=150, last=131.0)
    f = frame([prev, latest], CFG, 1.0, PROFILE)
    assert f is not None
    assert "bullish_hook" in f.warnings
    assert "bearish_hook" not in f.warnings
    assert f.confidence == pytest.approx(confidence)


def test_levels_directions_and_strengths() -> None:
    latest = sp("d1", 150, 170, 130, "d_shape", low=100, high=200, last=160.0, lvn=(140.0, 190.0))
    latest = replace(latest, naked_pocs=(120.0, 150.0))
    f = frame([latest], CFG, 1.0, PROFILE)
    assert f is not None
    got = sorted((lv.kind, lv.price, lv.direction, lv.strength) for lv in f.levels)
    assert got == sorted(
        [
            ("val", 130, Direction.LONG, 50),
            ("vah", 170, Direction.SHORT, 50),
            ("poc", 150, Direction.LONG, 30),  # below the last price: support
            ("lvn", 140, Direction.LONG, 40),
            ("lvn", 190, Direction.SHORT, 40),  # above: resistance
            ("naked_poc", 120, Direction.LONG, 40),  # the session's own POC is not "naked"
        ]
    )


def peaked(s: SessionProfile, centre: int, weight: int = 1) -> SessionProfile:
    """``s`` with a triangular histogram peaking at ``centre`` (a unique POC)."""
    rows = tuple((p, float(weight * (100 - abs(int(p) - centre)))) for p, _ in s.rows)
    return replace(s, rows=rows)


def test_confluence_and_merge() -> None:
    # prior VA 100-140 (POC 120), latest VA 110-150: overlap 30 / mean range 40 = 0.75 > 0.3
    prev = peaked(sp("d1", 120, 140, 100, "d_shape", low=90, high=160), 118)
    latest = peaked(sp("d2", 130, 150, 110, "d_shape", low=90, high=160, last=135.0), 133, 2)
    f = frame([prev, latest], CFG, 1.0, PROFILE)
    lv = levels_of(f)
    # tol = 0.05 x 40 = 2: VAH 150, VAL 110 and POC 130 match nothing of d1
    assert lv["val"][2] == 50
    assert lv["vah"][2] == 50
    assert lv["poc"][2] == 30
    summed: dict[int, Decimal] = {}
    for s in (prev, latest):
        for p, v in s.rows:
            summed[int(p)] = summed.get(int(p), Decimal(0)) + Decimal(v)
    lo, _, hi = _plain_va(summed, Decimal("0.7"))
    assert lv["merged_val"] == (float(lo), Direction.LONG, 70.0)
    assert lv["merged_vah"] == (float(hi), Direction.SHORT, 70.0)
    # a prior VAL within tol of the latest POC adds the bonus (+20 a match)
    prev2 = sp("d1", 119, 139, 129, "d_shape", low=90, high=160)
    assert levels_of(frame([prev2, latest], CFG, 1.0, PROFILE))["poc"][2] == 30 + 20


def test_no_merge_below_the_overlap_share() -> None:
    prev = sp("d1", 120, 140, 100, "d_shape")
    latest = sp("d2", 150, 160, 128, "d_shape")  # overlap 12 / mean 36 = 0.33 > 0.3: merged
    assert "merged_val" in levels_of(frame([prev, latest], CFG, 1.0, PROFILE))
    latest = sp("d2", 155, 165, 132, "d_shape")  # overlap 8 / mean 36.5 = 0.22: not merged
    assert "merged_val" not in levels_of(frame([prev, latest], CFG, 1.0, PROFILE))


def test_seed_golden_framing_vector() -> None:
    """Spec §20.5: day 1 LONG 62.5 with VAL 50 and POC 30; day 2 VAL 70 (confluent with day 1's
    POC), no merge (overlap 0.22). The seed's VAH BUY (§19.23) and its VA-shift "hook" proxy
    (+10) are the defects left out: VAH is a SHORT level, and day 2 is 61 + 15 = 76."""
    d1 = sp("d1", 18550, 18560, 18520, "p_shape", low=18490, high=18570)  # poc_pct 0.75
    f1 = frame([d1], CFG, 1.0, PROFILE)
    assert f1 is not None
    assert f1.direction is Direction.LONG
    assert f1.confidence == 62.5
    lv1 = levels_of(f1)
    assert lv1["val"] == (18520.0, Direction.LONG, 50.0)
    assert lv1["poc"][2] == 30
    d2 = sp("d2", 18580, 18600, 18550, "p_shape", low=18510, high=18610, last=18585.0)  # 0.70
    f2 = frame([d1, d2], CFG, 1.0, PROFILE)
    assert f2 is not None
    assert f2.confidence == pytest.approx(40 + 30 * 0.7 + 15)
    lv2 = levels_of(f2)
    assert lv2["val"][2] == 70
    assert "merged_val" not in lv2


# --- real sessions ----------------------------------------------------------------------------


def _cme() -> list[tuple[int, Decimal, int]]:
    with require(CME_ESH4_TRADES).open(newline="") as f:
        return [
            (int(r["ts_event_ns"]), Decimal(r["price"]), int(r["size"])) for r in csv.DictReader(f)
        ]


def _binance() -> list[tuple[int, Decimal, Decimal]]:
    out = []
    for _, obj in binance_lines(require(BINANCE_SPOT)):
        d = obj.get("data", obj)
        if d.get("e") == "trade":
            out.append((int(d["T"]) * 1_000_000, Decimal(d["p"]), Decimal(d["q"])))
    return out


def _two_sessions(
    raw: list[tuple[int, Decimal, Decimal | int]],
) -> list[list[tuple[int, Decimal, Decimal | int]]]:
    """The capture's two halves as two completed FULL_DAY sessions on consecutive UTC days: a
    trade keeps its offset from the capture's start (under an hour) from its day's midnight."""
    t0, t1 = raw[0][0], raw[-1][0]
    mid, day0 = (t0 + t1) // 2, t0 // DAY
    halves: list[list[tuple[int, Decimal, Decimal | int]]] = [[], []]
    for ts, p, q in raw:
        i = int(ts >= mid)
        halves[i].append(((day0 + i) * DAY + ts - t0, p, q))
    return halves


def _plain(
    session: list[tuple[int, Decimal, Decimal | int]], row: Decimal, pct: Decimal = Decimal("0.7")
) -> tuple[dict[int, Decimal], int, int, int]:
    """Histogram by row, POC (unique maximum) and the two-row value area, written out."""
    vols: dict[int, Decimal] = {}
    for _, p, q in session:
        k = int(p // row)
        vols[k] = vols.get(k, Decimal(0)) + Decimal(q)
    return (vols, *_plain_va(vols, pct))


def _plain_va(vols: dict[int, Decimal], pct: Decimal) -> tuple[int, int, int]:
    ladder = {k: vols.get(k, Decimal(0)) for k in range(min(vols), max(vols) + 1)}
    top = max(ladder.values())
    tied = [k for k, v in ladder.items() if v == top]
    assert len(tied) == 1, "this reference handles a unique POC only"
    poc = tied[0]
    total = sum(ladder.values())
    lo = hi = poc
    while sum(ladder[k] for k in range(lo, hi + 1)) < pct * total:
        ups = [k for k in (hi + 1, hi + 2) if k in ladder]
        downs = [k for k in (lo - 1, lo - 2) if k in ladder]
        if ups and (not downs or sum(ladder[k] for k in ups) >= sum(ladder[k] for k in downs)):
            hi = max(ups)
        else:
            lo = min(downs)
    return lo, poc, hi


def _instrument(name: str) -> tuple[Instrument, Decimal]:
    reg = load_registry()
    if name == "cme":
        es = msgspec.structs.replace(
            reg.get("SP500"), symbol="ESH4", tick_size=0.25, row_size=1.0, mt5=None
        )
        return es, Decimal("1")
    btc = reg.get("BTCUSDT")
    return btc, Decimal(str(btc.row_size))


@pytest.mark.parametrize("source", ["cme", "binance"])
def test_real_sessions_framed_as_a_plain_calculation(source: str) -> None:
    raw: list[tuple[int, Decimal, Decimal | int]] = list(_cme() if source == "cme" else _binance())
    inst, row = _instrument(source)
    sessions = _two_sessions(raw)
    profiler = SessionProfiler(
        inst, ProfileConfig.from_registry(inst.profile), spec=SESSIONS["FULL_DAY"]
    )
    finals: list[ProfileUpdate] = []
    for i, s in enumerate(sessions):
        for j, (ts, p, q) in enumerate(s):
            finals += profiler.on_trade(Trade(ts, ts, float(p), float(q), Side.BUY, f"{i}.{j}"))
    finals += profiler.on_time(sessions[-1][-1][0] + DAY)
    updates = [u for u in finals if u.scope == "session"]
    assert len(updates) == 2
    history = [
        SessionProfile.from_update(u, float(s[-1][1]))
        for u, s in zip(updates, sessions, strict=True)
    ]
    cfg = ProfileConfig.from_registry(inst.profile)
    f = frame(history, CFG, float(row), cfg)
    assert f is not None

    # the independent calculation
    plain = [_plain(s, row, Decimal(str(cfg.value_area_pct))) for s in sessions]
    (v1, lo1, poc1, hi1), (v2, lo2, poc2, hi2) = plain
    assert (Decimal(str(f.val)), Decimal(str(f.poc)), Decimal(str(f.vah))) == (
        lo2 * row,
        poc2 * row,
        hi2 * row,
    )
    pct = Decimal(poc2 - min(v2)) / Decimal(max(v2) - min(v2))
    shape = (
        "p_shape" if pct > Decimal("0.65") else "b_shape" if pct < Decimal("0.35") else "d_shape"
    )
    assert f.shape in (shape, "double_dist")
    base = {
        "p_shape": (Direction.LONG, 40 + 30 * float(pct)),
        "b_shape": (Direction.SHORT, 40 + 30 * (1 - float(pct))),
        "d_shape": (Direction.NEUTRAL, 20.0),
        "double_dist": (Direction.NEUTRAL, 30.0),
    }[f.shape]
    direction, confidence = base
    if poc2 > poc1 and hi2 > hi1:
        direction, confidence = (
            (direction, confidence + 15)
            if direction is Direction.LONG
            else (Direction.LONG, confidence + 10)
            if direction is Direction.NEUTRAL
            else (direction, confidence)
        )
    elif poc2 < poc1 and lo2 < lo1:
        direction, confidence = (
            (direction, confidence + 15)
            if direction is Direction.SHORT
            else (Direction.SHORT, confidence + 10)
            if direction is Direction.NEUTRAL
            else (direction, confidence)
        )
    last2, last1 = sessions[1][-1][1], sessions[0][-1][1]
    low2, high2 = min(v2) * row, max(v2) * row
    tol = Decimal("0.1") * (hi2 - lo2) * row
    if low2 < lo1 * row < last2 and direction is Direction.SHORT:
        confidence -= 10
    if high2 > hi1 * row > last2 and direction is Direction.LONG:
        confidence -= 10
    assert f.direction is direction
    assert f.confidence == pytest.approx(max(0, min(100, confidence)))
    assert last1 > 0
    assert tol >= 0

    # merge: overlap of the two value areas over their mean range
    overlap = (
        (min(hi1, hi2) - max(lo1, lo2)) / (Decimal(hi1 - lo1 + hi2 - lo2) / 2)
        if hi1 - lo1 + hi2 - lo2
        else Decimal(0)
    )
    kinds = {lv.kind: lv for lv in f.levels}
    assert ("merged_val" in kinds) is (overlap > Decimal("0.3"))
    if overlap > Decimal("0.3"):
        summed = dict(v1)
        for k, v in v2.items():
            summed[k] = summed.get(k, Decimal(0)) + v
        mlo, _, mhi = _plain_va(summed, Decimal(str(cfg.value_area_pct)))
        assert (
            Decimal(str(kinds["merged_val"].price)),
            Decimal(str(kinds["merged_vah"].price)),
        ) == (mlo * row, mhi * row)
    assert kinds["val"].price == f.val
    assert kinds["val"].direction is Direction.LONG
    assert kinds["vah"].price == f.vah
    assert kinds["vah"].direction is Direction.SHORT
