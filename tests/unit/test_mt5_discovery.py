"""Broker symbol discovery: the registry's MT5 names first, then suffix and prefix variants."""

from __future__ import annotations

from of_feed_mt5.discovery import DEFAULT_SUFFIXES, candidates, match, parse_suffixes, probe
from ofcommon.instruments import load_registry


def test_registry_names_come_first_in_their_order_then_variants() -> None:
    wanted = candidates(["EURUSDm", "EURUSD", "EURUSD.cash"], suffixes=("m", ".cash", ".pro"))
    assert wanted[:3] == ["EURUSDm", "EURUSD", "EURUSD.cash"]
    assert "EURUSD.pro" in wanted
    assert "#EURUSD" in wanted
    assert len(wanted) == len(set(wanted))


def test_bare_forms_drop_known_suffixes_and_prefixes() -> None:
    wanted = candidates(["#NAS100", "USTECm"], suffixes=DEFAULT_SUFFIXES)
    assert {"NAS100", "USTEC", "NAS100.r", "USTEC+", "USTEC.cash"} <= set(wanted)


def test_match_prefers_exact_names_then_ignores_case() -> None:
    wanted = ["XAUUSDm", "XAUUSD", "GOLD", "XAUUSD.r"]
    assert match(wanted, {"GOLD", "XAUUSD.r"}) == "GOLD"
    assert match(wanted, {"xauusd.R", "EURUSD"}) == "xauusd.R"
    assert match(wanted, {"XAGUSD"}) is None


def test_probe_asks_one_name_at_a_time_until_one_exists() -> None:
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name == "US500.cash"

    assert probe(["US500m", "US500", "US500.cash", "SP500"], exists) == "US500.cash"
    assert asked == ["US500m", "US500", "US500.cash"]


def test_every_registered_mt5_instrument_finds_its_exness_and_plain_names() -> None:
    for inst in load_registry():
        if inst.mt5 is None:
            continue
        wanted = candidates(inst.mt5.names)
        assert wanted[0] == inst.mt5.names[0]
        assert match(wanted, {inst.mt5.names[-1]}) == inst.mt5.names[-1]


def test_suffix_setting_parses() -> None:
    assert parse_suffixes(" m, .cash,,m ,+") == ("m", ".cash", "+")
