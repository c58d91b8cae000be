"""The sim service's OF_SIM_* settings: defaults, validation with precise errors, the run config."""

from __future__ import annotations

import pytest

from ofcommon.service import lookup
from ofcommon.settings import SettingsError, load_settings, settings_fields
from ofcommon.simulator import EPISODE_PATTERNS
from ofcommon.simulator.service import SERVICE, SimSettings


def load(**env: str) -> SimSettings:
    return load_settings(SimSettings, {f"OF_{k.upper()}": v for k, v in env.items()})


def test_defaults_give_a_reproducible_real_time_run_of_three_instruments() -> None:
    s = load()
    cfg = s.config(s.instruments_to_run())
    assert [i.symbol for i in cfg.instruments] == ["BTCUSDT", "EURUSD", "NAS100USDT"]
    assert cfg.start_ns == 1_709_649_000_000_000_000  # 2024-03-05T14:30:00Z
    assert cfg.seed == 42
    assert cfg.duration_ns == 0
    assert s.pace() == 1.0
    assert cfg.patterns == EPISODE_PATTERNS
    assert s.sim_labels_path == "var/sim/labels.jsonl"


def test_the_service_is_installed_under_its_name() -> None:
    assert lookup("sim") is SERVICE
    assert SERVICE.settings_type is SimSettings


def test_every_setting_is_documented() -> None:
    assert set(settings_fields(SimSettings)) == set(SimSettings.docs)


@pytest.mark.parametrize(
    ("value", "pace"), [("max", None), ("MAX", None), ("1", 1.0), ("2.5", 2.5)]
)
def test_speed(value: str, pace: float | None) -> None:
    assert load(sim_speed=value).pace() == pace


@pytest.mark.parametrize("value", ["0", "-1", "fast", "inf", "nan", ""])
def test_bad_speed_is_a_precise_error(value: str) -> None:
    with pytest.raises(SettingsError, match="OF_SIM_SPEED: expected 'max' or a positive number"):
        load(sim_speed=value)


def test_start_is_rfc3339_with_a_zone() -> None:
    assert load(sim_start="2024-03-05T15:30:00+01:00").start_ns() == 1_709_649_000_000_000_000
    assert load(sim_start="2024-03-05T14:30:00.5Z").start_ns() == 1_709_649_000_500_000_000
    for bad in ("2024-03-05T14:30:00", "yesterday"):
        with pytest.raises(SettingsError, match="OF_SIM_START: expected an RFC 3339 time"):
            load(sim_start=bad)


def test_patterns_and_instruments() -> None:
    s = load(sim_patterns="Sweep, absorption,sweep", sim_instruments="crypto,EURUSD")
    assert s.patterns() == ("sweep", "absorption")
    assert [i.symbol for i in s.instruments_to_run()] == ["BTCUSDT", "EURUSD"]
    # OF_INSTRUMENTS narrows what this worker simulates, as it narrows every stage.
    narrowed = load(sim_instruments="BTCUSDT,EURUSD,NAS100USDT", instruments="forex")
    assert [i.symbol for i in narrowed.instruments_to_run()] == ["EURUSD"]
    with pytest.raises(SettingsError, match="OF_SIM_PATTERNS: unknown pattern"):
        load(sim_patterns="iceberg")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("sim_duration_s", "-1", "OF_SIM_DURATION_S"),
        ("sim_book_depth", "3", "OF_SIM_BOOK_DEPTH"),
        ("sim_episode_gap_s", "0", "OF_SIM_EPISODE_GAP_S"),
        ("sim_seed", "x", "OF_SIM_SEED"),
    ],
)
def test_out_of_range_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(**{name: value})


def test_config_carries_every_setting() -> None:
    s = load(
        sim_seed="7",
        sim_duration_s="90.5",
        sim_heartbeat_s="0.5",
        sim_book_depth="30",
        sim_episode_gap_s="60",
    )
    cfg = s.config(s.instruments_to_run())
    assert (cfg.seed, cfg.duration_ns, cfg.heartbeat_ns) == (7, 90_500_000_000, 500_000_000)
    assert (cfg.book_depth, cfg.episode_gap_s) == (30, 60.0)
