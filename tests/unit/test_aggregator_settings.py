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
