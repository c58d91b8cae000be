"""The pure assignment of instruments to workers: exclusive, complete, fair, stable."""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from ofcommon.ownership import assign

SYMBOLS = [f"S{i:02d}" for i in range(31)]


@given(st.integers(min_value=1, max_value=12))
def test_every_instrument_has_one_worker_within_fair_share(n_workers: int) -> None:
    everyone = frozenset(SYMBOLS)
    workers = {f"w{i}": everyone for i in range(n_workers)}
    out = assign(workers)
    assert set(out) == set(SYMBOLS)
    loads = [list(out.values()).count(w) for w in workers]
    assert max(loads) <= math.ceil(len(SYMBOLS) / n_workers)


def test_independent_of_membership_order() -> None:
    everyone = frozenset(SYMBOLS)
    a = assign({"w1": everyone, "w2": everyone, "w3": everyone})
    b = assign({"w3": everyone, "w1": everyone, "w2": everyone})
    assert a == b


def test_a_worker_leaving_moves_mostly_its_own_instruments() -> None:
    everyone = frozenset(SYMBOLS)
    before = assign({"w1": everyone, "w2": everyone, "w3": everyone})
    after = assign({"w1": everyone, "w2": everyone})
    moved = {s for s in SYMBOLS if before[s] != after[s]}
    orphaned = {s for s in SYMBOLS if before[s] == "w3"}
    assert orphaned <= moved
    assert len(moved - orphaned) <= len(SYMBOLS) // 3


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.frozensets(st.sampled_from(SYMBOLS[:8]), min_size=1),
        min_size=1,
    )
)
def test_filters_are_respected(workers: dict[str, frozenset[str]]) -> None:
    out = assign(workers)
    assert set(out) == set().union(*workers.values())
    for symbol, worker in out.items():
        assert symbol in workers[worker]
