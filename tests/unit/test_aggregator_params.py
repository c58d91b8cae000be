"""Changed rules change what the aggregator does: per instrument from the registry file's
``[instruments.SYMBOL.aggregator]`` tables, service-wide from ``AggregatorParams``; an override
that does not fit is refused when the stage starts."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from tests.unit.test_aggregator_fold import inputs

from of_aggregator.fold import AggregatorFold
from of_aggregator.params import AggregatorParams
from ofcommon.instruments import Registry, load_registry
from ofcommon.messages import TradeEvent


def _registry(tmp_path: Path, toml: str) -> Registry:
    path = tmp_path / "instruments.toml"
    path.write_text(toml)
    return load_registry(path)


def _events(fold: AggregatorFold) -> list[TradeEvent]:
    state = fold.initial("BTCUSDT")
    out = [o[1] for k, m in inputs() for o in fold.step(state, k, m)]
    return [e for e in out if isinstance(e, TradeEvent)]


def test_the_default_day_enters_at_52_9() -> None:
    events = _events(AggregatorFold())
    (entry,) = (e for e in events if e.kind == "entry")
    # 0.30 x 90 (absorption) + 0.25 x 50 (VAL) + 0.20 x 67 (LONG bias)
    assert entry.score == pytest.approx(0.30 * 90 + 0.25 * 50 + 0.20 * 67)


def test_a_higher_min_score_for_the_instrument_rejects_the_entry(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "[instruments.BTCUSDT.aggregator.machine]\nmin_score = 60\n")
    events = _events(AggregatorFold(reg))
    assert [e.kind for e in events] == ["bias", "watch", "entry_rejected"]
    assert events[-1].reason == "score_below_min:52.9<60"
    # the other instruments keep the defaults
    fold = AggregatorFold(reg)
    assert fold.params_of("EURUSD") == AggregatorParams()
    assert fold.params_of("BTCUSDT").machine.min_score == 60.0


def test_score_weights_from_the_registry_change_the_score_and_grade(tmp_path: Path) -> None:
    reg = _registry(
        tmp_path, "[instruments.BTCUSDT.aggregator.machine.weights]\nabsorption = 0.5\n"
    )
    (entry,) = (e for e in _events(AggregatorFold(reg)) if e.kind == "entry")
    expected = 0.5 * 90 + 0.25 * 50 + 0.20 * 67  # 70.9: grade A (>= 70)
    assert entry.score == pytest.approx(expected)
    assert entry.grade == "A"


def test_framing_strengths_decide_what_is_watched(tmp_path: Path) -> None:
    # VAL at strength 40 is below the watch minimum (50): the day is framed, nothing is watched
    reg = _registry(tmp_path, "[instruments.BTCUSDT.aggregator.framing]\nva_strength = 40\n")
    assert [e.kind for e in _events(AggregatorFold(reg))] == ["bias"]


def test_min_rr_and_stop_rules_reject_or_allow(tmp_path: Path) -> None:
    # entry 59,620, stop 59,470 (VAL - 0.1 x 1,300), target 60,900: reward/risk 1280/150 = 8.53
    reg = _registry(tmp_path, "[instruments.BTCUSDT.aggregator.machine.risk]\nmin_rr = 9\n")
    events = _events(AggregatorFold(reg))
    assert events[-1].kind == "entry_rejected"
    assert events[-1].reason == f"reward_risk_below_min:{1280 / 150:.2f}<9"
    wide = _registry(tmp_path, "[instruments.BTCUSDT.aggregator.machine.risk]\nstop_va = 0.3\n")
    (entry,) = (e for e in _events(AggregatorFold(wide)) if e.kind == "entry")
    assert entry.stop == pytest.approx(59_600.0 - 0.3 * (60_900.0 - 59_600.0))


def test_the_instrument_override_wins_over_the_service_wide_rule(tmp_path: Path) -> None:
    wide = AggregatorParams()
    wide = msgspec.structs.replace(
        wide, machine=msgspec.structs.replace(wide.machine, min_score=80.0)
    )
    assert [e.kind for e in _events(AggregatorFold(params=wide))][-1] == "entry_rejected"
    reg = _registry(tmp_path, "[instruments.BTCUSDT.aggregator.machine]\nmin_score = 50\n")
    fold = AggregatorFold(reg, params=wide)
    assert "entry" in [e.kind for e in _events(fold)]
    assert fold.params_of("EURUSD").machine.min_score == 80.0


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[instruments.BTCUSDT.aggregator.machine]\nmin_scor = 50\n", "min_scor"),
        ("[instruments.BTCUSDT.aggregator]\nweights = 1\n", "weights"),
        ("[instruments.BTCUSDT.aggregator.machine.cooldown_s]\nsweap = 5\n", "sweap"),
    ],
)
def test_a_bad_override_stops_the_stage_at_start(tmp_path: Path, toml: str, match: str) -> None:
    fold = AggregatorFold(_registry(tmp_path, toml))
    with pytest.raises(ValueError, match=r"\[instruments\.BTCUSDT\.aggregator\]") as err:
        fold.check()
    assert match in str(err.value)
