"""The monitor engine end to end, without a broker: simulated streams and bad input."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest

from pipeline.data.drift import DriftSpec, parse_drift_spec
from pipeline.data.simulator import SimulatorConfig, simulate
from pipeline.features import FEATURE_NAMES, feature_matrix, timestamps_to_ms
from pipeline.monitor.config import DAY_MS, HOUR_MS, MonitorConfig
from pipeline.monitor.engine import MonitorEngine
from pipeline.monitor.errors import (
    DUPLICATE,
    INVALID_VALUE,
    TOO_OLD,
    UNKNOWN_TRANSACTION,
    InvalidRecord,
)
from pipeline.monitor.summarize import summarize_windows

T0 = 1_530_403_200_000
CONFIG = MonitorConfig(block_min_count=500)  # ~12 simulated hours per block here
WARM_UP_DAYS = 7


@cache
def _simulated_stats(seed: int, drift: str) -> tuple[int, list[dict[str, Any]]]:
    """Hourly stats of two workers over a small simulated population; scores from features."""
    spec = parse_drift_spec(drift) if drift else DriftSpec()
    df = simulate(
        SimulatorConfig(n_customers=600, n_terminals=1200, n_days=40, seed=seed, drift=spec)
    )
    x = feature_matrix(df)
    ts = timestamps_to_ms(df["timestamp"])
    names = list(FEATURE_NAMES)
    amount, ratio = x[:, names.index("amount")], x[:, names.index("card_amount_to_mean_30d")]
    scores = 1.0 / (1.0 + np.exp(-(amount / 60.0 + np.nan_to_num(ratio) - 6.0)))
    start = int(ts.min()) // DAY_MS * DAY_MS
    keep = ts >= start + WARM_UP_DAYS * DAY_MS
    cards = df["card_id"].to_numpy()
    records: list[dict[str, Any]] = []
    for worker in range(2):
        rows = keep & (cards % 2 == worker)
        records += summarize_windows(
            ts[rows],
            scores[rows],
            x[rows],
            names,
            window_ms=HOUR_MS,
            model_name="m",
            model_version="1",
            worker_id=f"w{worker}",
            alerted=scores[rows] >= 0.5,
        )
    records.sort(key=lambda r: (r["window_end"], r["worker_id"]))
    return start, records


def _alarm_days(seed: int, drift: str) -> list[tuple[float, str]]:
    start, records = _simulated_stats(seed, drift)
    engine = MonitorEngine(CONFIG)
    events = [e for r in records for e in engine.on_stats(r, now_ms=0)]
    return [((e["window_end"] - start) / DAY_MS, e["signal"]) for e in events]


@pytest.mark.parametrize("seed", [1, 2])
def test_no_false_alarm_on_stationary_simulated_days(seed: int) -> None:
    assert _alarm_days(seed, "") == []


@pytest.mark.parametrize("seed", [1, 2])
def test_covariate_shift_detected_within_a_day(seed: int) -> None:
    alarms = _alarm_days(seed, "covariate@day=25")
    first_day, _ = alarms[0]
    assert 25.0 < first_day <= 26.0
    signals = {s for d, s in alarms if d <= 26.0}
    assert "score_mean" in signals and signals & {
        "feature:amount",
        "feature:card_amount_to_mean_30d",
    }


def _outcome(tid: int, **changes: Any) -> dict[str, Any]:
    ts = T0 + tid * 60_000
    record = {
        "transaction_id": tid,
        "card_id": tid % 5,
        "timestamp": ts,
        "score": 0.2,
        "action": "APPROVE",
        "model_name": "m",
        "model_version": "1",
        "rollout_arm": "champion",
        "is_fraud": False,
        "decided_at": ts + 3,
        "label_timestamp": ts + 7 * DAY_MS,
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_outcome(1, model_version=""), UNKNOWN_TRANSACTION),
        (_outcome(1, decided_at=0), UNKNOWN_TRANSACTION),
        (_outcome(1, score=1.5), INVALID_VALUE),
        (_outcome(1, score=float("nan")), INVALID_VALUE),
        (_outcome(1, label_timestamp=0), INVALID_VALUE),
        ({"transaction_id": 1}, "malformed"),
    ],
)
def test_bad_outcomes_raise_with_a_reason_and_leave_state_alone(
    record: dict[str, Any], reason: str
) -> None:
    engine = MonitorEngine()
    with pytest.raises(InvalidRecord) as info:
        engine.on_outcome(record, now_ms=0)
    assert info.value.reason == reason
    assert engine.on_outcome(_outcome(1), now_ms=0) == []  # the good one is still new


def test_duplicate_and_too_old_outcomes_are_rejected_and_counted() -> None:
    engine = MonitorEngine(MonitorConfig(retention_ms=DAY_MS))
    engine.on_outcome(_outcome(1), now_ms=0)
    with pytest.raises(InvalidRecord) as dup:
        engine.on_outcome(_outcome(1), now_ms=0)
    assert dup.value.reason == DUPLICATE
    engine.on_outcome(_outcome(3 * 24 * 60), now_ms=0)  # three days later
    with pytest.raises(InvalidRecord) as old:
        engine.on_outcome(_outcome(2), now_ms=0)
    assert old.value.reason == TOO_OLD
    engine.reject("outcomes", TOO_OLD)
    sample = engine.metrics.registry.get_sample_value
    assert (
        sample("fraud_monitor_dead_letters_total", {"stream": "outcomes", "reason": TOO_OLD}) == 1
    )
    assert sample("fraud_monitor_records_in_total", {"stream": "outcomes"}) == 4


def test_quality_gauges_per_model_version() -> None:
    engine = MonitorEngine(MonitorConfig(quality_update_ms=1))
    for tid in range(1, 101):
        fraud = tid % 10 == 0
        alert = tid % 5 == 0
        engine.on_outcome(
            _outcome(
                tid,
                is_fraud=fraud,
                action="REVIEW" if alert else "APPROVE",
                score=0.9 if fraud else 0.6 if alert else 0.1,
            ),
            now_ms=0,
        )
    labels = {"model": "m", "version": "1", "arm": "champion"}
    sample = engine.metrics.registry.get_sample_value
    assert sample("fraud_monitor_precision", labels) == pytest.approx(0.5)
    assert sample("fraud_monitor_recall", labels) == pytest.approx(1.0)
    assert sample("fraud_monitor_average_precision", labels) == pytest.approx(1.0)
    snap = engine.quality(("m", "1", "champion"))
    assert (snap.outcomes, snap.frauds, snap.alerts) == (100, 10, 20)
