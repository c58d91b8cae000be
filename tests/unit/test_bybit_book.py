"""Bybit L2 book: exact decimal keys, snapshot/delta rules, depth window, crossing, sorted output.
A hypothesis model check compares the book with a naive dict replay of random deltas.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from of_feed_bybit.book import L2Book, parse_decimal, parse_levels

# --- decimal strings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5011", 0.5011),
        ("61837.63000000", 61837.63),
        ("6203", 6203.0),
        ("0", 0.0),
        ("0.00000000", 0.0),
        ("007.50", 7.5),
        ("123456789012345", 123456789012345.0),  # 15 significant digits: still exact
        ("0.000000000000000000012345", 1.2345e-20),
    ],
)
def test_plain_decimals_parse(text: str, value: float) -> None:
    assert parse_decimal(text) == value


def test_trailing_zeros_hit_the_same_key() -> None:
    assert parse_decimal("61837.63000000") == parse_decimal("61837.63")
    assert parse_decimal("1.9530") == parse_decimal("1.953")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "+1",
        "1e5",
        "1E-3",
        "nan",
        "inf",
        " 1",
        "1 ",
        "1.",
        ".5",
        "1.2.3",
        "0x10",
        "1_000",
        "١٢٣",  # Arabic-Indic digits: float() would accept them
        "1234567890123456",  # 16 significant digits
        "0.1234567890123456",
        "1" + "0" * 40,  # too long
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"decimal|significant"):
        parse_decimal(text)


_decimals = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("9999999"), places=8, allow_nan=False
)


@given(_decimals, _decimals)
def test_float_keys_order_and_identify_like_the_decimals(a: Decimal, b: Decimal) -> None:
    fa, fb = parse_decimal(f"{a:f}"), parse_decimal(f"{b:f}")
    assert (fa < fb) == (a < b)
    assert (fa == fb) == (a == b)


def test_levels_parse_and_name_the_bad_level() -> None:
    assert parse_levels([["1.5", "2"], ["1.4", "0"]]) == [(1.5, 2.0), (1.4, 0.0)]
    with pytest.raises(ValueError, match=r"\[1\]: 'x' is not a plain decimal"):
        parse_levels([["1.5", "2"], ["x", "1"]])
    with pytest.raises(ValueError, match=r"\[0\]: price '0' is not positive"):
        parse_levels([["0", "1"]])
    with pytest.raises(ValueError, match=r"\[0\]: expected \[price, size\], got 3 items"):
        parse_levels([["1", "1", "1"]])


# --- book ---------------------------------------------------------------------------------------


def test_snapshot_replaces_and_sorts_best_first() -> None:
    book = L2Book(50)
    book.replace([(99.0, 1.0), (100.0, 2.0)], [(102.0, 1.0), (101.0, 3.0)])
    book.replace([(98.0, 1.0), (97.0, 5.0), (96.0, 0.0)], [(103.0, 4.0)])
    assert book.levels("bid") == [(98.0, 1.0), (97.0, 5.0)]  # zero size: no level
    assert book.levels("ask") == [(103.0, 4.0)]
    assert book.best_bid() == (98.0, 1.0)
    assert book.best_ask() == (103.0, 4.0)
    assert book.count("bid") == 2


def test_delta_deletes_inserts_and_sets_absolute_sizes() -> None:
    book = L2Book(50)
    book.replace([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)])
    changes = book.update([(100.0, 0.0), (98.0, 4.0), (99.0, 7.0)], [(101.0, 0.5)])
    assert book.levels("bid") == [(99.0, 7.0), (98.0, 4.0)]
    assert book.levels("ask") == [(101.0, 0.5)]
    assert changes.bids == [(100.0, 0.0), (99.0, 7.0), (98.0, 4.0)]
    assert changes.asks == [(101.0, 0.5)]
    assert changes.absent_deletes == 0


def test_delete_of_an_absent_level_is_tolerated_and_counted() -> None:
    book = L2Book(5)
    book.replace([(100.0, 1.0)], [(101.0, 1.0)])
    changes = book.update([(90.0, 0.0)], [(120.0, 0.0), (101.0, 0.0)])
    assert changes.absent_deletes == 2
    assert book.levels("ask") == []
    assert book.levels("bid") == [(100.0, 1.0)]


def test_window_keeps_the_best_levels_and_reports_the_dropped_ones() -> None:
    book = L2Book(3)
    assert book.replace([(float(p), 1.0) for p in range(90, 96)], [(100.0, 1.0)]) == 3
    assert [p for p, _ in book.levels("bid")] == [95.0, 94.0, 93.0]
    changes = book.update([(96.0, 2.0)], [(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)])
    assert [p for p, _ in book.levels("bid")] == [96.0, 95.0, 94.0]
    assert [p for p, _ in book.levels("ask")] == [97.0, 98.0, 99.0]
    assert changes.bids == [(96.0, 2.0), (93.0, 0.0)]
    assert changes.asks == [(97.0, 1.0), (98.0, 1.0), (99.0, 1.0), (100.0, 0.0)]
    assert changes.truncated == 2


def test_window_is_applied_per_message_not_per_level() -> None:
    # Bybit sends the delete of a level leaving the window and the insert of the one entering it
    # in one message, in any order: the entering level must survive.
    book = L2Book(2)
    book.replace([(100.0, 1.0), (99.0, 1.0)], [])
    book.update([(98.0, 3.0), (100.0, 0.0)], [])
    assert book.levels("bid") == [(99.0, 1.0), (98.0, 3.0)]


def test_crossed() -> None:
    book = L2Book(10)
    book.replace([(100.0, 1.0)], [])
    assert not book.crossed()  # one side empty
    book.update([], [(100.5, 1.0)])
    assert not book.crossed()
    book.update([], [(100.0, 1.0)])
    assert book.crossed()  # a locked book is a missed update too
    book.update([(100.0, 0.0)], [])
    assert not book.crossed()


def test_levels_n_best_first_and_clear() -> None:
    book = L2Book(10)
    book.replace([(float(p), 1.0) for p in (5, 9, 7, 8)], [(float(p), 1.0) for p in (12, 10, 11)])
    assert book.levels("bid", 2) == [(9.0, 1.0), (8.0, 1.0)]
    assert book.levels("ask", 2) == [(10.0, 1.0), (11.0, 1.0)]
    assert book.levels("ask", 10) == [(10.0, 1.0), (11.0, 1.0), (12.0, 1.0)]
    book.clear()
    assert book.levels("bid") == []
    assert book.best_bid() is None
    assert book.best_ask() is None


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        L2Book(0)


# --- model check --------------------------------------------------------------------------------

_prices = st.integers(min_value=1, max_value=60)
_sizes = st.sampled_from([0, 0, 1, 2, 3, 5, 8])
_levels = st.lists(st.tuples(_prices, _sizes), max_size=12)


def _naive_top(side: dict[float, float], depth: int, best_high: bool) -> dict[float, float]:
    kept = sorted(side, reverse=best_high)[:depth]
    return {p: side[p] for p in kept}


@given(
    depth=st.integers(min_value=1, max_value=8),
    snapshot=st.tuples(_levels, _levels),
    deltas=st.lists(st.tuples(_levels, _levels), max_size=25),
)
def test_random_deltas_equal_a_naive_dict_model(
    depth: int,
    snapshot: tuple[list[tuple[int, int]], list[tuple[int, int]]],
    deltas: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]],
) -> None:
    def floats(levels: list[tuple[int, int]], offset: int) -> list[tuple[float, float]]:
        # Bids on 1..60, asks on 101..160: random books stay uncrossed.
        return [(float(p + offset), float(s)) for p, s in levels]

    book = L2Book(depth)
    bids0, asks0 = floats(snapshot[0], 0), floats(snapshot[1], 100)
    book.replace(bids0, asks0)
    model = {
        # A repeated price takes its last size; zero means no level.
        "bid": _naive_top({p: s for p, s in dict(bids0).items() if s}, depth, True),
        "ask": _naive_top({p: s for p, s in dict(asks0).items() if s}, depth, False),
    }
    consumer = {side: dict(levels) for side, levels in model.items()}
    for raw_bids, raw_asks in deltas:
        changes = book.update(floats(raw_bids, 0), floats(raw_asks, 100))
        for side, raw, offset, high in (("bid", raw_bids, 0, True), ("ask", raw_asks, 100, False)):
            for p, s in raw:
                if s:
                    model[side][float(p + offset)] = float(s)
                else:
                    model[side].pop(float(p + offset), None)
            model[side] = _naive_top(model[side], depth, high)
        # A consumer applying the reported changes holds the same book.
        for side, changed in (("bid", changes.bids), ("ask", changes.asks)):
            for p, s in changed:
                if s:
                    consumer[side][p] = s
                else:
                    consumer[side].pop(p, None)
        for side in ("bid", "ask"):
            expected = sorted(model[side].items(), reverse=side == "bid")
            assert book.levels(side) == expected
            assert sorted(consumer[side].items(), reverse=side == "bid") == expected
        assert not book.crossed()


def _slow_parse(text: str) -> float:
    """The full check alone, as parse_decimal did before its fast path."""
    import re

    m = re.fullmatch(r"([0-9]+)(?:\.([0-9]+))?", text) if len(text) <= 40 else None
    if m is None or len((m[1] + (m[2] or "")).strip("0")) > 15:
        raise ValueError(text)
    return float(text)


@given(
    st.one_of(
        st.text(alphabet="0123456789.-+e_ ", max_size=20),
        st.text(max_size=8),
        st.from_regex(r"[0-9]{1,10}(\.[0-9]{1,8})?", fullmatch=True),
    )
)
def test_fast_path_accepts_and_rejects_exactly_what_the_full_check_does(text: str) -> None:
    try:
        expected: float | None = _slow_parse(text)
    except ValueError:
        expected = None
    try:
        got: float | None = parse_decimal(text)
    except ValueError:
        got = None
    assert got == expected
