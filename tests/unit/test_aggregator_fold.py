"""The aggregator fold on a hand-made BTCUSDT day: a final session profile frames the next day,
bars and an absorption at VAL enter, the rally to VAH takes profit; the status follows; a fold
restored from its encoded state after every input repeats the same outputs."""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec
import pytest
from tests.support.aggregator_market import market

from of_aggregator.fold import AggregatorFold, AggregatorState
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    Bar,
    Bias,
    Direction,
    Message,
    PatternSignal,
    ProfileUpdate,
    StrategyStatus,
    TradeEvent,
)
from ofcommon.stage import assign_ids

S = 1_000_000_000
MIN = 60 * S
D1 = 1_704_067_200 * S  # 2024-01-01 00:00 UTC, BTCUSDT's FULL_DAY session
D2 = D1 + 86_400 * S


def profile(final: bool = True, scope: str = "session") -> ProfileUpdate:
    rows = [(59_000.0 + 10 * i, 100.0 - abs(80 - i)) for i in range(201)]  # peak at 59,800 + ...
    return ProfileUpdate(
        scope=scope,
        session_id="2024-01-01",
        session_start=D1,
        session_end=D2,
        ts_event=D2,
        poc=60_800.0,
        vah=60_900.0,
        val=59_600.0,
        volume=sum(v for _, v in rows),
        rows=rows,
        shape="p_shape",
        final=final,
    )


def bar(i: int, low: float, high: float, close: float, final: bool = True) -> Bar:
    t = D2 + i * MIN
    return Bar(
        "1m",
        t,
        t + MIN,
        close,
        high,
        low,
        close,
        1.0,
        0.5,
        0.5,
        0.0,
        0.0,
        0.0,
        1,
        close,
        close,
        [],
        final,
    )


def inputs() -> list[tuple[str, Message]]:
    return [
        ("profile", profile(final=False)),  # developing: ignored
        ("profile", profile(scope="composite:3")),  # composite: ignored
        ("bars", bar(-1, 60_000.0, 60_010.0, 60_005.0)),  # yesterday's last bar
        ("profile", profile()),
        ("bars", bar(0, 59_605.0, 59_650.0, 59_620.0)),
        ("bars", bar(1, 59_605.0, 59_650.0, 59_620.0, final=False)),  # partial: ignored
        (
            "patterns",
            PatternSignal("abs-1", D2 + MIN + 1, "absorption", Direction.LONG, 59_600.0, 90.0),
        ),
        ("bars", bar(1, 59_610.0, 60_100.0, 60_050.0)),
        ("bars", bar(2, 60_040.0, 60_910.0, 60_880.0)),
    ]


def run(restore_every_step: bool) -> list[tuple[str, Message]]:
    fold = AggregatorFold()
    state: AggregatorState = fold.initial("BTCUSDT")
    out: list[tuple[str, Message]] = []
    for kind, msg in inputs():
        if restore_every_step:
            state = AggregatorFold().decode_state(fold.encode_state(state))
        step: Sequence[tuple[str, Message] | tuple[str, Message, object]] = fold.step(
            state, kind, msg
        )
        out.extend((o[0], o[1]) for o in step)
    return out


def test_a_day_of_framing_entry_and_take_profit() -> None:
    out = run(restore_every_step=False)
    biases = [m for k, m in out if k == "bias"]
    assert len(biases) == 1
    (b,) = biases
    assert isinstance(b, Bias)
    # p_shape: POC at (60,800 - 59,000) / 2,000 = 0.9 of the range -> LONG, 40 + 27 = 67
    assert (b.bias, b.confidence, b.session_id) == (Direction.LONG, 67.0, "2024-01-01")
    events = [m for k, m in out if k == "tradeevents"]
    assert all(isinstance(e, TradeEvent) for e in events)
    kinds = [(e.kind, e.reason) for e in events if isinstance(e, TradeEvent)]
    assert kinds == [
        ("bias", "p_shape"),
        ("watch", "val"),
        ("entry", "absorption"),
        ("exit", "take_profit"),
    ]
    entry, exit_ = (e for e in events if isinstance(e, TradeEvent) and e.kind in ("entry", "exit"))
    # entry at the bar's close; SL = VAL - 0.1 x (VAH - VAL) = 59,470; TP = VAH
    assert (entry.price, entry.stop, entry.target) == (59_620.0, 59_470.0, 60_900.0)
    # 0.30 x 90 + 0.25 x 50 + 0.20 x 67 = 52.9
    assert abs(entry.score - 52.9) < 1e-9
    assert exit_.price == 60_900.0
    tick = load_registry().get("BTCUSDT").tick_size
    assert exit_.pnl_ticks == round((60_900.0 - 59_620.0) / tick, 6)
    assert exit_.r_multiple == round((60_900.0 - 59_620.0) / (59_620.0 - 59_470.0), 6)
    snaps = [m for k, m in out if k == "status" and isinstance(m, StrategyStatus)]
    statuses = [m.status for m in snaps]
    # README scanner priority: base + 3 per step active / triggered / completed; in a trade all
    # six are, 100 + 18 = 118 (the seed's maximum, spec §20); watching: 60 + 3 x 3 (framing,
    # levels, price at level)
    assert [m.priority for m in snaps] == [10, 40 + 6, 60 + 9, 118, 70 + 3 * 4]
    # after the exit the bar is at VAH: a level, not watched under a LONG bias
    assert statuses == ["NO_DATA", "WAITING_FOR_PRICE", "WATCHING", "IN_TRADE", "AT_LEVEL_SCANNING"]


def test_restored_state_repeats_the_outputs() -> None:
    assert run(restore_every_step=True) == run(restore_every_step=False)


def _merged(
    streams: dict[str, list[tuple[EntryId, Message]]], rng: random.Random
) -> list[tuple[str, EntryId, Message]]:
    """A random interleaving as a stage can deliver it: each stream in its own order, and the
    bars late by any amount relative to the patterns and profiles derived from the same market
    (a read of the bars that ran before the other streams' read), never early."""
    pos = dict.fromkeys(streams, 0)
    out = []

    def ready(k: str) -> bool:
        if pos[k] >= len(streams[k]):
            return False
        if k != "bars":
            return True
        at = streams[k][pos[k]][0]
        return all(pos[o] >= len(v) or v[pos[o]][0] > at for o, v in streams.items() if o != k)

    while any(pos[k] < len(v) for k, v in streams.items()):
        k = rng.choice([k for k in streams if ready(k)])
        at, msg = streams[k][pos[k]]
        pos[k] += 1
        out.append((k, at, msg))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_outputs_do_not_depend_on_late_bars(seed: int) -> None:
    inst = load_registry().get("BTCUSDT")
    items = market(inst, 60_000.0, D1, 5, seed=3)
    streams: dict[str, list[tuple[EntryId, Message]]] = {"bars": [], "profile": [], "patterns": []}
    for n, (kind, msg) in enumerate(items, 1):
        streams[kind].append((EntryId(n, 0), msg))
    in_order = sorted(((k, at, m) for k, v in streams.items() for at, m in v), key=lambda x: x[1])

    def outputs(seq: list[tuple[str, EntryId, Message]]) -> list[tuple[str, EntryId, Message]]:
        fold = AggregatorFold()
        state = fold.initial("BTCUSDT")
        last: dict[str, EntryId] = {}
        res = []
        for kind, at, msg in seq:
            res.extend(assign_ids(fold.step(state, kind, msg, at), at, last))
        return res

    reference = outputs(in_order)
    assert any(isinstance(m, TradeEvent) and m.kind == "exit" for _, _, m in reference)
    assert outputs(_merged(streams, random.Random(seed))) == reference


@pytest.mark.parametrize(
    ("kind", "msg", "reason"),
    [
        ("bars", bar(0, float("nan"), 59_650.0, 59_620.0), "non-finite price"),
        ("bars", bar(0, 59_700.0, 59_650.0, 59_620.0), "outside low..high"),
        (
            "patterns",
            PatternSignal("p", D2, "absorption", Direction.LONG, 1.0, float("inf")),
            "non-finite",
        ),
        ("profile", msgspec.structs.replace(profile(), val=61_000.0), "not finite and ordered"),
    ],
)
def test_bad_input_is_refused_with_the_reason_and_changes_nothing(
    kind: str, msg: Message, reason: str
) -> None:
    fold = AggregatorFold()
    state = fold.initial("BTCUSDT")
    for k, m in inputs()[:5]:
        fold.step(state, k, m)
    before = fold.encode_state(state)
    with pytest.raises(ValueError, match=reason):
        fold.step(state, kind, msg)
    assert fold.encode_state(state) == before
