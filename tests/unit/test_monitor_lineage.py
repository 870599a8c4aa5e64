"""In-sample outcomes: training ranges from the registry keep them from the error detector."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from pipeline.monitor.config import DAY_MS, MonitorConfig
from pipeline.monitor.engine import MonitorEngine
from pipeline.monitor.lineage import RegistryTrainingRanges, TrainingRange
from pipeline.registry import ModelRegistry

T0 = 1_530_403_200_000  # 2018-07-01T00:00Z
STEP_MS = 8_640  # 10,000 outcomes per day


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_dates_cover_whole_days_and_times_are_instants() -> None:
    days = TrainingRange.from_data_range(("2018-07-01", "2018-07-02"))
    assert (days.start_ms, days.end_ms) == (T0, T0 + 2 * DAY_MS)
    assert days.contains(T0) and days.contains(T0 + 2 * DAY_MS - 1)
    assert not days.contains(T0 - 1) and not days.contains(T0 + 2 * DAY_MS)
    times = TrainingRange.from_data_range(("2018-07-01T06:00", "2018-07-01T18:00+00:00"))
    assert (times.start_ms, times.end_ms) == (_ms("2018-07-01T06:00"), _ms("2018-07-01T18:00"))


@pytest.mark.parametrize(
    "data_range", [("2018-07-01", "yesterday"), ("2018-07-02T00:00", "2018-07-01T12:00")]
)
def test_unusable_ranges_raise(data_range: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        TrainingRange.from_data_range(data_range)


def _register(root: Path, data_range: tuple[str, str]) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    params = {"max_depth": 2, "objective": "binary:logistic", "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), 3)
    version = ModelRegistry(root).register(
        booster, features=["a", "b"], params=params, data_range=data_range, metrics={}
    )
    return version.label


def test_registry_lookup_reads_the_versions_data_range(tmp_path: Path) -> None:
    label = _register(tmp_path, ("2018-07-01", "2018-07-03"))
    lookup = RegistryTrainingRanges(tmp_path)
    assert lookup("fraud", label) == TrainingRange(T0, T0 + 3 * DAY_MS)
    assert lookup("fraud", "v99") is None  # not registered
    assert lookup("no such/name", label) is None  # not a model name
    assert RegistryTrainingRanges(tmp_path / "missing")("fraud", label) is None


def test_a_missing_version_is_looked_up_again_after_the_retry_delay(tmp_path: Path) -> None:
    lookup = RegistryTrainingRanges(tmp_path, retry_s=0.0)
    assert lookup("fraud", "v1") is None
    _register(tmp_path, ("2018-07-01", "2018-07-01"))
    assert lookup("fraud", "v1") == TrainingRange(T0, T0 + DAY_MS)


def _outcomes(seed: int, n: int, in_sample: int) -> list[dict[str, Any]]:
    """Error rate 0.4% on the first ``in_sample`` outcomes (training data), 1.2% after."""
    rng = np.random.default_rng(seed)
    errors = rng.random(n) < np.where(np.arange(n) < in_sample, 0.004, 0.012)
    out = []
    for i, error in enumerate(errors.tolist()):
        ts = T0 + i * STEP_MS
        out.append(
            {
                "transaction_id": i,
                "card_id": i % 50,
                "timestamp": ts,
                "score": 0.1,
                "action": "REVIEW" if error else "APPROVE",
                "model_name": "m",
                "model_version": "v1",
                "rollout_arm": "champion",
                "is_fraud": False,
                "decided_at": ts + 5,
                "label_timestamp": ts + 7 * DAY_MS,
            }
        )
    return out


TRAINED = TrainingRange(T0 - 10 * DAY_MS, T0 + 2 * DAY_MS)  # the first 20,000 outcomes
CONFIG = MonitorConfig(quality_update_ms=DAY_MS)  # quality gauges are not under test here


def _alarms(engine: MonitorEngine, outcomes: list[dict[str, Any]]) -> list[int]:
    return [record["transaction_id"] for record in outcomes if engine.on_outcome(record, 0)]


def test_in_sample_errors_rising_out_of_sample_alarm_without_the_training_range() -> None:
    outcomes = _outcomes(1, 60_000, 20_000)
    assert _alarms(MonitorEngine(CONFIG), outcomes) == [21_599]


def test_in_sample_outcomes_are_skipped_and_counted() -> None:
    outcomes = _outcomes(1, 60_000, 20_000)
    engine = MonitorEngine(CONFIG, training_ranges=lambda name, version: TRAINED)
    assert _alarms(engine, outcomes) == []
    labels = {"model": "m", "version": "v1", "arm": "champion"}
    sample = engine.metrics.registry.get_sample_value
    assert sample("fraud_monitor_in_sample_outcomes_total", labels) == 20_000
    assert engine.quality(("m", "v1", "champion")).outcomes == 60_000  # quality sees all


def test_skipping_can_be_turned_off_and_unknown_ranges_skip_nothing() -> None:
    outcomes = _outcomes(1, 60_000, 20_000)
    kept = MonitorEngine(
        replace(CONFIG, error_skip_in_sample=False), training_ranges=lambda n, v: TRAINED
    )
    assert _alarms(kept, outcomes) == [21_599]
    unknown = MonitorEngine(CONFIG, training_ranges=lambda name, version: None)
    assert _alarms(unknown, outcomes) == [21_599]
