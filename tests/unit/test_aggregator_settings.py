"""The aggregator's OF_AGGREGATOR_* variables reach the trade machine; bad values are refused."""

from __future__ import annotations

import pytest

from of_aggregator.machine import TradeMachine
from of_aggregator.settings import AggregatorSettings
from ofcommon.settings import SettingsError, load_settings


def test_variables_reach_the_machine() -> None:
    s = load_settings(
        AggregatorSettings,
        {
            "OF_AGGREGATOR_MIN_SCORE": "55",
            "OF_AGGREGATOR_MIN_RR": "2",
            "OF_AGGREGATOR_WATCH_ROWS": "3",
            "OF_AGGREGATOR_COUNTER_BIAS": "true",
            "OF_AGGREGATOR_WATCH_TIMEOUT_S": "600",
            "OF_AGGREGATOR_MAX_HOLD_S": "3600",
            "OF_AGGREGATOR_EXIT_STRENGTH": "80",
        },
    )
    p = s.machine()
    assert (p.min_score, p.risk.min_rr, p.counter_bias) == (55.0, 2.0, True)
    assert (p.watch_timeout_s, p.max_hold_s, p.exit_strength) == (600.0, 3600.0, 80.0)
    # three rows of 10 (BTCUSDT's row) from a level
    assert TradeMachine("BTCUSDT", 0.1, 10.0, p).reach == 30.0


def test_defaults_are_the_machines() -> None:
    p = load_settings(AggregatorSettings, {}).machine()
    assert (p.min_score, p.risk.min_rr, p.watch_rows, p.counter_bias) == (40.0, 1.5, 1.0, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OF_AGGREGATOR_MIN_SCORE", "101"),
        ("OF_AGGREGATOR_MIN_RR", "0"),
        ("OF_AGGREGATOR_MAX_HOLD_S", "x"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(AggregatorSettings, {name: value})


def test_params_variable_overrides_any_rule_and_keeps_the_rest() -> None:
    s = load_settings(
        AggregatorSettings,
        {
            "OF_AGGREGATOR_PARAMS": '{"machine": {"cooldown_s": {"sweep": 90},'
            ' "weights": {"absorption": 0.5}, "risk": {"min_stop_ticks": 8}},'
            ' "framing": {"va_strength": 60, "merge_overlap": 0.4}}',
            "OF_AGGREGATOR_MIN_SCORE": "45",
        },
    )
    p = s.params()
    assert p.machine.cooldown_s == {
        "watch": 300.0,
        "absorption": 30.0,
        "sweep": 90.0,
        "exhaustion": 30.0,
        "divergence": 30.0,
    }
    assert (p.machine.weights.absorption, p.machine.weights.level) == (0.5, 0.25)
    assert (p.machine.risk.min_stop_ticks, p.machine.risk.min_rr) == (8, 1.5)
    assert (p.framing.va_strength, p.framing.merge_overlap, p.framing.poc_strength) == (
        60.0,
        0.4,
        30.0,
    )
    assert p.machine.min_score == 45.0


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('{"machine": {"min_score": 50}}', "machine.min_score has its own variable"),
        ('{"machine": {"risk": {"min_rr": 2}}}', "OF_AGGREGATOR_MIN_RR"),
        ('{"machine": {"cooldown_s": {"absorbtion": 5}}}', "unknown kind 'absorbtion'"),
        ('{"framing": {"va_strenght": 60}}', "va_strenght"),
        ('{"machine": {"weights": {"level": "x"}}}', "machine.weights.level"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_params_name_the_variable_and_the_rule(value: str, match: str) -> None:
    with pytest.raises(SettingsError, match="OF_AGGREGATOR_PARAMS") as err:
        load_settings(AggregatorSettings, {"OF_AGGREGATOR_PARAMS": value})
    assert match in str(err.value)
