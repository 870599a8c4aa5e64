"""The --drift SPEC grammar: what parses, what it means, and the errors for what does not."""

from __future__ import annotations

import pytest

from pipeline.data.drift import (
    CardTesting,
    CovariateShift,
    DriftSpec,
    FraudRateChange,
    format_drift_spec,
    parse_drift_spec,
)
from pipeline.data.errors import DriftSpecError, SimulationConfigError
from pipeline.data.simulator import SimulatorConfig


def test_full_spec_parses_every_kind() -> None:
    spec = parse_drift_spec(
        "covariate@day=90,share=0.5,factor=1.8;card_testing@day=91,cards_per_day=10;"
        "fraud_rate@day=92,factor=3"
    )
    assert spec.covariate == CovariateShift(day=90, share=0.5, factor=1.8)
    assert spec.card_testing == CardTesting(day=91, cards_per_day=10)
    assert spec.fraud_rate == FraudRateChange(day=92, factor=3.0)
    assert spec.first_day == 90
    assert spec.last_day == 92
    assert not spec.is_empty


def test_defaults_whitespace_and_trailing_separator() -> None:
    spec = parse_drift_spec("  card_testing @ day = 5 , probes=8 ; ")
    assert spec.card_testing == CardTesting(day=5, probes=8)
    assert spec.card_testing.cards_per_day == 10
    assert spec.covariate is None and spec.fraud_rate is None


def test_blank_spec_means_no_drift() -> None:
    assert parse_drift_spec("").is_empty
    assert parse_drift_spec(" ; ").first_day is None


def test_fraud_rate_counts() -> None:
    by_factor = parse_drift_spec("fraud_rate@day=1,factor=2.5").fraud_rate
    assert by_factor is not None
    assert (by_factor.terminals_per_day(2), by_factor.customers_per_day(3)) == (5, 8)
    explicit = parse_drift_spec("fraud_rate@day=1,terminals=7,customers=0").fraud_rate
    assert explicit is not None
    assert (explicit.terminals_per_day(2), explicit.customers_per_day(3)) == (7, 0)


def test_format_round_trips() -> None:
    text = "covariate@day=3,share=0.25,factor=2;fraud_rate@day=4,terminals=6"
    spec = parse_drift_spec(text)
    assert parse_drift_spec(format_drift_spec(spec)) == spec
    assert str(DriftSpec()) == ""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus@day=1", "unknown drift kind 'bogus'"),
        ("covariate", "covariate: missing '@day=N'"),
        ("covariate@share=0.5", "covariate: 'day' is required"),
        ("covariate@day=1,colour=red", "covariate: unknown parameter 'colour'"),
        ("covariate@day=1,factor=big", "covariate: factor must be a number, got 'big'"),
        ("covariate@day=1.5", "covariate: day must be an integer"),
        ("covariate@day=1,factor=nan", "covariate: factor must be finite"),
        ("covariate@day=1,share", "covariate: expected key=value, got 'share'"),
        ("covariate@day=1,day=2", "parameter 'day' given more than once"),
        ("covariate@day=1;covariate@day=2", "'covariate' given more than once"),
        ("covariate@day=1,share=0", "share must be in (0, 1]"),
        ("covariate@day=1,factor=-1", "factor must be > 0"),
        ("card_testing@day=-1", "day must be >= 0"),
        ("card_testing@day=1,probes=1", "probes must be in [2, 50]"),
        ("card_testing@day=1,cards_per_day=0", "cards_per_day must be >= 1"),
        ("card_testing@day=1,cashout_min=500", "cashout_min <= cashout_max"),
        ("fraud_rate@day=1,terminals=-2", "terminals must be >= 0"),
    ],
)
def test_invalid_specs_give_one_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(DriftSpecError) as info:
        parse_drift_spec(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_drift_day_must_fall_within_the_simulation() -> None:
    with pytest.raises(SimulationConfigError, match="drift day 30 is not within the 30"):
        SimulatorConfig(n_days=30, drift=parse_drift_spec("covariate@day=30"))
    SimulatorConfig(n_days=31, drift=parse_drift_spec("covariate@day=30"))
