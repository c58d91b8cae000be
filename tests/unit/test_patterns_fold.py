"""The patterns fold: warm-up, what it ignores, decision time, no look-ahead, checkpoint and
batching independence, and mirrored tapes giving mirrored signals."""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from tests.support.pattern_bars import MIN, SYMBOL, T0, S, background, bar, book, take

from of_patterns.fold import PatternsFold, PatternsState
from ofcommon import codec, stage
from ofcommon.entry_ids import EntryId
from ofcommon.instruments import load_registry
from ofcommon.messages import (
    Bar,
    BookStats,
    Consumption,
    Direction,
    Gap,
    ImbalanceRow,
    Message,
    PatternSignal,
    Side,
)

REGISTRY = load_registry()
Inputs = list[tuple[str, Message]]


def scenario() -> Inputs:
    """25 quiet bars, then: a mismatch bar (absorption SHORT), quiet bars, an initiative bar
    (LONG), a sweep of three asks in 80 ms (LONG), quiet bars, a four-bar exhaustion up (SHORT).
    In entry-ID order as the stage folds it: each input's index is its entry ID."""
    pulled = msgspec.structs.replace(take(T0, Side.SELL, 17999.9, 1.0), traded=0.0, cancelled=1.0)
    out: Inputs = [("bookstats", book(T0, 17999.9, 18000.0)), ("consumption", pulled)]
    out += [("bars", b) for b in background(25)]
    out.append(("bars", bar(25, 18000.5, 18001.0, 17999.5, 18000.0, 80.0, 60.0)))
    out += [("bars", b) for b in background(3, start=26)]
    out.append(("bars", bar(29, 18000.0, 18000.6, 17999.9, 18000.5, 60.0, 40.0)))
    t = T0 + 30 * MIN + 20 * S
    out.append(("bookstats", book(t - 2 * S, 17999.9, 18000.0, thin=[18000.1, 18000.2])))
    out += [
        ("consumption", take(t + k * 40_000_000, Side.BUY, round(18000.0 + 0.1 * k, 1), 2.5))
        for k in range(3)
    ]
    # the book goes on updating: its event time passes what the sweep needs
    out.append(("bookstats", book(t + S // 2, 18000.2, 18000.3)))
    out += [("bars", b) for b in background(10, start=30)]
    for k, (h, v, d) in enumerate(
        [(18000.3, 40.0, 20.0), (18000.5, 32.0, 12.0), (18000.7, 26.0, 6.0), (18000.9, 20.0, 0.0)]
    ):
        out.append(("bars", bar(40 + k, h - 0.3, h, h - 0.4, h - 0.1, v, d)))
    return out


def fold_all(fold: PatternsFold, inputs: Sequence[tuple[str, Message]]) -> list[PatternSignal]:
    state = fold.initial(SYMBOL)
    out = []
    for kind, msg in inputs:
        for o in fold.step(state, kind, msg):
            assert o[0] == "patterns"
            assert isinstance(o[1], PatternSignal)
            out.append(o[1])
    return out


@pytest.mark.parametrize("mode", ["auto", "fixed"])
def test_scenario_signals(mode: str) -> None:
    fold = PatternsFold(REGISTRY, mode=mode)
    got = [(s.pattern, s.direction, s.ts_event) for s in fold_all(fold, scenario())]
    assert got == [
        ("absorption", Direction.SHORT, T0 + 26 * MIN),
        ("initiative", Direction.LONG, T0 + 30 * MIN),
        ("sweep", Direction.LONG, T0 + 30 * MIN + 20 * S + 80_000_000 + S),
        ("exhaustion", Direction.SHORT, T0 + 44 * MIN),
    ]


def test_nothing_fires_during_the_warm_up() -> None:
    inputs = scenario()
    # the mismatch is the 26th bar: judged once 25 closed bars were seen before it
    fold = PatternsFold(REGISTRY, mode="fixed", warmup=26)
    assert "absorption" not in {s.pattern for s in fold_all(fold, inputs)}
    fold = PatternsFold(REGISTRY, mode="fixed", warmup=25)
    assert next(s.pattern for s in fold_all(fold, inputs)) == "absorption"


def test_partial_bars_other_timeframes_amendments_and_gaps_are_not_judged() -> None:
    mismatch = bar(25, 18000.5, 18001.0, 17999.5, 18000.0, 80.0, 60.0)
    quiet: Inputs = [("bars", b) for b in background(25)]
    fold = PatternsFold(REGISTRY, mode="fixed")
    for variant in (
        msgspec.structs.replace(mismatch, final=False),
        msgspec.structs.replace(mismatch, timeframe="5m"),
        msgspec.structs.replace(mismatch, gapped=True),
    ):
        assert fold_all(fold, [*quiet, ("bars", variant)]) == []
    # an amendment of a bar already judged (rev 2, same open time) is ignored
    amended = msgspec.structs.replace(quiet[-1][1], rev=2, delta=60.0, close=17999.9)
    state = fold.initial(SYMBOL)
    for kind, msg in [*quiet, ("bars", amended)]:
        assert list(fold.step(state, kind, msg)) == []
    assert state.amended_bars == 1
    assert fold.tallies(state)["amended_bars_ignored"] == 1


def test_signal_fields_and_deterministic_ids() -> None:
    fold = PatternsFold(REGISTRY, mode="fixed")
    first = fold_all(fold, scenario())
    again = fold_all(PatternsFold(REGISTRY, mode="fixed"), scenario())
    assert [codec.encode(s) for s in first] == [codec.encode(s) for s in again]
    assert len({s.signal_id for s in first}) == len(first)
    sig = first[0]
    assert (sig.timeframe, sig.price) == ("1m", 18001.0)
    assert 0.0 <= sig.strength <= 100.0
    assert sig.details["delta"] == 60.0
    assert sig.details["threshold"] == 50.0


def _event_ts(kind: str, msg: Message) -> int:
    if isinstance(msg, Bar):
        return msg.close_ts
    assert isinstance(msg, BookStats | Consumption)
    return msg.ts_event


def test_no_look_ahead() -> None:
    """Every signal comes out, identical, from the inputs known by its decision time alone."""
    inputs = scenario()
    signals = fold_all(PatternsFold(REGISTRY), inputs)
    assert len(signals) == 4
    for sig in signals:
        # a consumption event is known once analytics' 1 s matching window has passed
        prefix = [
            (k, m)
            for k, m in inputs
            if _event_ts(k, m) + (S if k == "consumption" else 0) <= sig.ts_event
        ]
        # published at once: the order of publication waits for the other streams, not content
        assert sig in fold_all(PatternsFold(REGISTRY, hold_ns=None), prefix)


def _mirror(kind: str, msg: Message) -> Message:
    """Prices reflected about 18000, sides swapped, deltas negated."""
    f = 36000.0
    if isinstance(msg, Bar):
        return msgspec.structs.replace(
            msg,
            open=f - msg.open,
            high=f - msg.low,
            low=f - msg.high,
            close=f - msg.close,
            delta=-msg.delta,
            cvd=-msg.cvd,
            cvd_total=-msg.cvd_total,
            buy_volume=msg.sell_volume,
            sell_volume=msg.buy_volume,
            imbalances=[ImbalanceRow(f - i.price, Side(-i.side), i.ratio) for i in msg.imbalances],
        )
    if isinstance(msg, Consumption):
        return msgspec.structs.replace(msg, side=Side(-msg.side), price=round(f - msg.price, 1))
    assert isinstance(msg, BookStats)
    return msgspec.structs.replace(
        msg,
        best_bid=f - msg.best_ask,
        best_ask=f - msg.best_bid,
        thin_levels=[round(f - p, 1) for p in msg.thin_levels],
    )


def test_a_mirrored_tape_flips_every_direction() -> None:
    inputs = scenario()
    plain = fold_all(PatternsFold(REGISTRY), inputs)
    mirrored = fold_all(PatternsFold(REGISTRY), [(k, _mirror(k, m)) for k, m in inputs])
    assert [(s.pattern, s.ts_event, -s.direction) for s in plain] == [
        (s.pattern, s.ts_event, s.direction) for s in mirrored
    ]
    assert [s.strength for s in plain] == [s.strength for s in mirrored]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(scenario())), max_size=6))
def test_checkpoints_anywhere_change_nothing(cuts: list[int]) -> None:
    """The stage may checkpoint and restore between any two inputs: the signals stay the same."""
    inputs = scenario()
    fold = PatternsFold(REGISTRY)
    expected = fold_all(fold, inputs)
    state: PatternsState = fold.initial(SYMBOL)
    out: list[Message] = []
    for n, (kind, msg) in enumerate(inputs):
        if n in cuts:
            state = fold.decode_state(fold.encode_state(state))
        out.extend(o[1] for o in fold.step(state, kind, msg))
    assert out == expected


def test_a_state_of_another_version_is_refused() -> None:
    fold = PatternsFold(REGISTRY)
    state = fold.initial(SYMBOL)
    state.version = 99
    with pytest.raises(ValueError, match="version 99"):
        fold.decode_state(fold.encode_state(state))


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_signals_do_not_depend_on_how_the_streams_interleave(rnd: random.Random) -> None:
    """Any interleaving of the three streams that keeps each stream's order (a restart drains
    them separately, reads race) gives the same signals, each anchored at the same entry."""
    inputs = scenario()
    fold = PatternsFold(REGISTRY)
    ids = {n: EntryId(1000 + n, 0) for n in range(len(inputs))}

    def signals(order: list[int]) -> list[tuple[EntryId, bytes]]:
        state = fold.initial(SYMBOL)
        out = []
        for n in order:
            kind, msg = inputs[n]
            for o in fold.step(state, kind, msg, ids[n]):
                assert len(o) == 3  # anchored: the ID does not depend on the releasing input
                out.append((o[2], codec.encode(o[1])))
        return out  # in publication order: anchor order whatever the interleaving

    queues = {k: [n for n, (kind, _) in enumerate(inputs) if kind == k] for k in fold.inputs}
    # the stage's first read takes every stream's first entries together
    order = sorted(q.pop(0) for q in queues.values())
    while any(queues.values()):
        kind = rnd.choice([k for k, q in queues.items() if q])
        order.append(queues[kind].pop(0))
    assert signals(order) == signals(list(range(len(inputs))))


def test_a_gap_on_the_bars_stream_breaks_every_bar_pattern() -> None:
    """Four exhaustion bars around a Gap (bars may be missing between) fire nothing."""
    inputs = scenario()
    cut = len(inputs) - 2  # between the 2nd and 3rd bar of the exhaustion window
    gap = Gap(T0 + 42 * MIN, T0 + 42 * MIN, "trades", "trimmed: 5 entries gone")
    with_gap = [*inputs[:cut], ("bars", gap), *inputs[cut:]]
    fold = PatternsFold(REGISTRY)
    assert "exhaustion" in {s.pattern for s in fold_all(fold, inputs)}
    state = fold.initial(SYMBOL)
    out = [o[1] for k, m in with_gap for o in fold.step(state, k, m)]
    assert "exhaustion" not in {s.pattern for s in out if isinstance(s, PatternSignal)}
    assert fold.tallies(state)["bar_gaps"] == 1


_noise = st.lists(
    st.tuples(st.integers(-3, 3), st.floats(5.0, 60.0), st.floats(-0.9, 0.9)),
    min_size=25,
    max_size=40,
)


@settings(max_examples=30, deadline=None)
@given(_noise)
def test_mirrored_tape_flips_directions_whatever_the_background(
    noise: list[tuple[int, float, float]],
) -> None:
    """Random background bars (moves of a few ticks, any volume and delta), then the scenario's
    patterns: the mirrored tape gives the same signals with the opposite directions."""
    quiet: Inputs = []
    price = 18000.0
    for i, (move, volume, share) in enumerate(noise):
        o, c = price, round(price + 0.1 * move, 1)
        hi, lo = max(o, c) + 0.1, min(o, c) - 0.1
        quiet.append(("bars", bar(i - len(noise), o, hi, lo, c, volume, share * volume)))
        price = c
    inputs = quiet + scenario()
    plain = fold_all(PatternsFold(REGISTRY), inputs)
    mirrored = fold_all(PatternsFold(REGISTRY), [(k, _mirror(k, m)) for k, m in inputs])
    assert [(s.pattern, s.ts_event, -s.direction, s.strength) for s in plain] == [
        (s.pattern, s.ts_event, s.direction, s.strength) for s in mirrored
    ]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40))
def test_signals_do_not_depend_on_how_inputs_are_batched(sizes: list[int]) -> None:
    """The stage hands the fold each read's consecutive entries of one stream as one batch
    (``ofcommon.stage.step_batch``); any cut into batches gives the entry-by-entry signals, with
    the same anchors."""
    inputs = scenario()
    fold = PatternsFold(REGISTRY)
    ids = [EntryId(1000 + n, 0) for n in range(len(inputs))]
    state = fold.initial(SYMBOL)
    expected = [
        (o[2], codec.encode(o[1]))
        for n, (kind, msg) in enumerate(inputs)
        for o in fold.step(state, kind, msg, ids[n])
    ]
    state = fold.initial(SYMBOL)
    got: list[tuple[EntryId, bytes]] = []
    n, cut = 0, iter(sizes * (len(inputs) // len(sizes) + 1))
    while n < len(inputs):
        kind = inputs[n][0]
        end = n
        limit = n + next(cut)
        while end < min(limit, len(inputs)) and inputs[end][0] == kind:
            end += 1
        batch = [(ids[k], inputs[k][1]) for k in range(n, end)]
        for outs in stage.step_batch(fold, state, kind, batch):
            got.extend((o[2], codec.encode(o[1])) for o in outs)
        n = end
    assert got == expected
    assert len(expected) == 3  # the exhaustion waits: no other stream has passed its anchor
