"""One source per instrument: the registry's `source` (default Bybit where it lists the
instrument, else MT5) splits the instruments between the two feeds without overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from of_feed_bybit.service import bybit_instruments
from of_feed_mt5.service import mt5_instruments, published_instruments
from ofcommon.instruments import RegistryConfigError, load_registry


def _bybit(registry_file: str = "") -> set[str]:
    registry = load_registry(registry_file or None)
    return {i.symbol for insts in bybit_instruments(registry, "").values() for i in insts}


def _mt5(registry_file: str = "") -> set[str]:
    return {i.symbol for i in published_instruments(load_registry(registry_file or None), "")}


def test_the_feeds_split_the_default_registry_without_overlap() -> None:
    registry = load_registry()
    both = {i.symbol for i in registry if i.bybit is not None and i.mt5 is not None}
    only_mt5 = {i.symbol for i in registry if i.bybit is None and i.mt5 is not None}
    any_venue = {i.symbol for i in registry if i.bybit is not None or i.mt5 is not None}
    assert {"BTCUSDT", "XAUUSDT", "AAPL"} <= both
    assert len(both) == 12  # the collision the issue names: twelve instruments on both venues

    assert _bybit() & _mt5() == set()
    assert _bybit() | _mt5() == any_venue
    assert both <= _bybit()  # the documented default: Bybit where it lists the instrument
    assert _mt5() == only_mt5
    # Recording is not publishing: the MT5 recorder still sees every instrument it has names for.
    assert {i.symbol for i in mt5_instruments(registry, "")} == only_mt5 | both


def test_the_registry_file_moves_an_instrument_to_mt5(tmp_path: Path) -> None:
    path = tmp_path / "instruments.toml"
    path.write_text('[instruments.BTCUSDT]\nsource = "mt5"\n')
    assert "BTCUSDT" in _mt5(str(path))
    assert "BTCUSDT" not in _bybit(str(path))
    assert _bybit(str(path)) & _mt5(str(path)) == set()


def test_a_source_without_that_venue_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "instruments.toml"
    path.write_text('[instruments.EURUSD]\nsource = "bybit"\n')
    with pytest.raises(RegistryConfigError, match=r"EURUSD.*'bybit' is not a venue of EURUSD"):
        load_registry(path)
    path.write_text('[instruments.BTCUSDT]\nsource = "binance"\n')
    with pytest.raises(RegistryConfigError, match=r"source = 'binance'"):
        load_registry(path)
