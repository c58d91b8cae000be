"""The native client over the fake MetaTrader5 module: the seam's types, errors and refusals."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tests.support import fake_mt5

from of_feed_mt5 import constants
from of_feed_mt5.client import BookLevel, Mt5Error, Mt5Unavailable, SymbolDetails
from of_feed_mt5.native import NativeClient
from of_feed_mt5.venue import VENUE
from ofcommon.instruments import load_registry
from ofcommon.venue import RecordOptions

NOW = 1_723_161_255_000  # server ms


@pytest.fixture
def terminal() -> Iterator[fake_mt5.FakeTerminal]:
    term = fake_mt5.small_terminal(NOW, login=7, password="pw", server="Srv")
    fake_mt5.install(term)
    yield term
    fake_mt5.install(None)


def test_on_linux_the_native_client_says_to_use_the_bridge() -> None:
    with pytest.raises(Mt5Unavailable, match="OF_MT5_BRIDGE_HOST"):
        NativeClient()


def test_native_client_speaks_the_package_api(terminal: fake_mt5.FakeTerminal) -> None:
    client = NativeClient(fake_mt5)
    assert client.symbol_info("EURUSDm") is None  # not initialized: no IPC
    assert client.last_error()[0] == fake_mt5.RES_E_INTERNAL_FAIL_CONNECT
    assert client.initialize(timeout=1000)
    assert not client.login(7, password="wrong", server="Srv")
    assert client.last_error()[0] == fake_mt5.RES_E_AUTH_FAILED
    assert client.login(7, password="pw", server="Srv")
    info = client.symbol_info("EURUSDm")
    assert isinstance(info, SymbolDetails)
    assert (info.name, info.visible, info.ticks_bookdepth, info.description) == (
        "EURUSDm",
        False,
        5,
        "Euro",
    )
    assert client.symbol_info("NOPE") is None
    assert client.last_error()[0] == fake_mt5.RES_E_NOT_FOUND
    listed = client.symbols_get()
    assert listed is not None
    assert [s.name for s in listed] == ["EURUSDm"]
    assert client.symbols_get("*USD*,!EUR*") == []
    when = datetime.fromtimestamp(NOW // 1000 - 5, UTC)
    assert (
        client.copy_ticks_from("EURUSDm", when, 10, client.COPY_TICKS_ALL) is None
    )  # not selected
    assert client.symbol_select("EURUSDm", True)
    ticks = client.copy_ticks_from("EURUSDm", when, 3, client.COPY_TICKS_ALL)
    assert ticks is not None
    assert ticks.dtype == constants.TICK_DTYPE
    assert len(ticks) == 3
    assert client.market_book_add("EURUSDm")
    book = client.market_book_get("EURUSDm")
    assert book is not None
    assert book[0] == BookLevel(1, 1.3, 1, 1.0)  # the package's order: sells first, descending
    assert client.market_book_release("EURUSDm")
    client.shutdown()
    assert not terminal.connected


def test_naive_datetimes_never_reach_the_terminal(terminal: fake_mt5.FakeTerminal) -> None:
    client = NativeClient(fake_mt5)
    client.initialize()
    with pytest.raises(Mt5Error, match="naive"):
        client.copy_ticks_from("EURUSDm", datetime(2024, 1, 1), 10, -1)  # noqa: DTZ001
    assert terminal.calls["copy_ticks_from"] == 0


def test_a_module_with_other_constants_is_refused() -> None:
    odd = types.SimpleNamespace(**{n: getattr(fake_mt5, n) for n in constants.EXPECTED})
    odd.TICK_FLAG_BUY = 0x40
    with pytest.raises(Mt5Unavailable, match="TICK_FLAG_BUY"):
        NativeClient(odd)


def test_arrays_in_another_field_order_are_normalised(terminal: fake_mt5.FakeTerminal) -> None:
    from of_feed_mt5.client import as_tick_array

    shuffled = np.zeros(
        2, dtype=[(n, constants.TICK_DTYPE[n]) for n in reversed(constants.TICK_FIELDS)]
    )
    shuffled["time_msc"] = [5, 6]
    out = as_tick_array(shuffled)
    assert out.dtype == constants.TICK_DTYPE
    assert out["time_msc"].tolist() == [5, 6]
    with pytest.raises(Mt5Error, match="layout"):
        as_tick_array(np.zeros(2, dtype=[("time", "<i8")]))


async def test_recording_without_a_reachable_terminal_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OF_MT5_BRIDGE_HOST", raising=False)
    options = RecordOptions("ticks", tmp_path, 30.0, load_registry())
    with pytest.raises(ValueError, match="OF_MT5_BRIDGE_HOST"):
        await asyncio.wait_for(VENUE.record(options, asyncio.Event()), 10)
    with pytest.raises(ValueError, match="one category"):
        await VENUE.record(options._replace(category="book"), asyncio.Event())
