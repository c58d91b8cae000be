"""The tick cursor: across any poll boundaries no tick is lost and none is delivered twice."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings, strategies as st

from of_feed_mt5.cursor import MSC, TickCursor, TickRow

T0 = 1_700_000_000_000  # ms


def tick(msc: int, bid: float = 1.1, ask: float = 1.2, flags: int = 6) -> TickRow:
    return (msc // 1000, bid, ask, 0.0, 0, msc, flags, 0.0)


class Terminal:
    """copy_ticks_from over the ticks revealed so far, honouring whole seconds of date_from."""

    def __init__(self, ticks: Sequence[TickRow]) -> None:
        self.ticks = list(ticks)
        self.revealed = 0
        self.requests = 0

    def copy_ticks_from(self, from_s: int, count: int) -> list[TickRow]:
        self.requests += 1
        seen = self.ticks[: self.revealed]
        return [t for t in seen if t[MSC] >= from_s * 1000][:count]


def drain(term: Terminal, cursor: TickCursor, out: list[TickRow]) -> None:
    """One poll, then again at once while the result was full (as the feed does)."""
    for _ in range(10_000):
        out.extend(cursor.advance(term.copy_ticks_from(cursor.request_from_s, cursor.count)))
        if not cursor.more:
            return
    raise AssertionError("cursor never caught up")


steps = st.sampled_from([0, 0, 0, 0, 1, 2, 7, 999, 1000, 1001, 2500])


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[TickRow], list[int], int]:
    gaps = draw(st.lists(steps, min_size=1, max_size=80))
    ticks: list[TickRow] = []
    msc = T0 + draw(st.integers(0, 999))
    for i, gap in enumerate(gaps):
        msc += gap
        # Identical records in one millisecond happen (two equal prints): some ticks repeat.
        same = draw(st.booleans()) and ticks and ticks[-1][MSC] == msc
        ticks.append(ticks[-1] if same else tick(msc, bid=1.1 + i * 1e-5))
    cuts = sorted(draw(st.lists(st.integers(0, len(ticks)), max_size=12)))
    return ticks, [*cuts, len(ticks)], draw(st.integers(1, 6))


@settings(max_examples=400, deadline=None)
@given(scripts())
def test_no_tick_is_lost_or_repeated_across_poll_boundaries(
    script: tuple[list[TickRow], list[int], int],
) -> None:
    ticks, cuts, count = script
    term = Terminal(ticks)
    cursor = TickCursor(ticks[0][MSC] - 1500, count=count)
    out: list[TickRow] = []
    for cut in cuts:
        term.revealed = cut
        drain(term, cursor, out)
    assert out == ticks


def test_same_millisecond_ticks_split_over_two_polls_arrive_once() -> None:
    a, b, c = tick(T0 + 5, 1.0), tick(T0 + 5, 1.1), tick(T0 + 5, 1.2)
    cursor = TickCursor(T0)
    assert cursor.advance([a, b]) == [a, b]
    assert cursor.msc == T0 + 5
    assert cursor.seen_at_cursor == 2
    # The next poll re-reads the cursor's second: a and b again, then the new c.
    assert cursor.advance([tick(T0 + 1), a, b, c]) == [c]
    assert cursor.advance([a, b, c]) == []


def test_older_ticks_of_the_requested_second_are_dropped() -> None:
    cursor = TickCursor(T0 + 500)
    assert cursor.advance([tick(T0 + 100), tick(T0 + 499), tick(T0 + 500)]) == [tick(T0 + 500)]
    assert cursor.request_from_s == (T0 + 500) // 1000


def test_a_full_result_without_progress_doubles_the_count() -> None:
    # Nine ticks in one second, polled four at a time: the cursor must widen its window.
    burst = [tick(T0 + i // 3, 1.0 + i * 1e-5) for i in range(9)]
    term = Terminal(burst)
    term.revealed = len(burst)
    cursor = TickCursor(T0, count=4)
    out: list[TickRow] = []
    drain(term, cursor, out)
    assert out == burst
    assert cursor.count > 4  # it had to grow past the burst's size to make progress
    assert not cursor.more


def test_count_shrinks_back_to_its_base_once_polls_are_small() -> None:
    cursor = TickCursor(T0, count=2)
    cursor.advance([tick(T0), tick(T0)])
    cursor.advance([tick(T0), tick(T0)])  # full, nothing new: grow
    assert cursor.count == 4
    cursor.advance([])
    assert cursor.count == 2
    cursor.retune(1000)
    assert cursor.count == 1000


def test_nan_fields_compare_equal_so_such_a_tick_is_not_repeated() -> None:
    odd = (T0 // 1000, float("nan"), 1.2, 0.0, 0, T0, 6, 0.0)
    cursor = TickCursor(T0)
    assert len(cursor.advance([odd])) == 1
    assert cursor.advance([odd]) == []


def test_a_rewritten_millisecond_delivers_only_records_not_seen_before() -> None:
    a, b, c = tick(T0, 1.0), tick(T0, 1.1), tick(T0, 1.2)
    cursor = TickCursor(T0)
    cursor.advance([a, b])
    # The terminal inserted c before b: b was seen, c was not.
    assert cursor.advance([a, c, b]) == [c]


def test_resume_from_a_count_skips_that_many_ticks_of_the_millisecond() -> None:
    a, b, c = tick(T0, 1.0), tick(T0, 1.1), tick(T0, 1.2)
    cursor = TickCursor(T0, seen_count=2)
    assert cursor.advance([a, b, c, tick(T0 + 1)]) == [c, tick(T0 + 1)]
