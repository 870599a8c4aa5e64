"""Online quality per model version, and the retraining trigger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.model.metrics import average_precision, card_precision_at_k
from pipeline.monitor.config import DAY_MS, HOUR_MS, MonitorConfig
from pipeline.monitor.detectors import DriftSignal
from pipeline.monitor.quality import QualityTracker
from pipeline.monitor.records import Outcome
from pipeline.monitor.trigger import RetrainTrigger, drift_event

T0 = 1_530_403_200_000  # a midnight UTC


def _outcomes(seed: int, days: int, per_day: int = 300) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(days * per_day):
        fraud = bool(rng.random() < 0.05)
        score = float(np.clip(rng.normal(0.7 if fraud else 0.2, 0.2), 0, 1))
        ts = T0 + i * (DAY_MS // per_day)
        out.append(
            Outcome(
                i,
                int(rng.integers(0, 400)),
                ts,
                score,
                score >= 0.5,
                fraud,
                "m",
                "1",
                "champion",
                ts + 7 * DAY_MS,
            )
        )
    return out


def test_sliding_window_quality_matches_direct_computation() -> None:
    config = MonitorConfig(quality_window_ms=2 * DAY_MS)
    tracker = QualityTracker(config)
    outcomes = _outcomes(1, 5)
    for o in outcomes:
        tracker.add(o)
    window = [o for o in outcomes if o.timestamp >= outcomes[-1].timestamp - 2 * DAY_MS]
    fraud = np.array([o.is_fraud for o in window])
    alert = np.array([o.alerted for o in window])
    snap = tracker.snapshot()
    assert snap.outcomes == len(window)
    assert snap.precision == pytest.approx((fraud & alert).sum() / alert.sum())
    assert snap.recall == pytest.approx((fraud & alert).sum() / fraud.sum())
    assert snap.average_precision == pytest.approx(
        average_precision(fraud, [o.score for o in window])
    )


def test_card_precision_per_closed_day_matches_the_handbook_metric() -> None:
    config = MonitorConfig(card_precision_k=10, day_close_after_ms=DAY_MS)
    tracker = QualityTracker(config)
    outcomes = _outcomes(2, 4)
    closed = [day for o in outcomes for day in tracker.add(o)]
    # days 0 and 1 closed (day 2 closes only once outcomes reach day 4)
    assert [d.day_start for d in closed] == [T0, T0 + DAY_MS]
    first_two = [o for o in outcomes if o.timestamp < T0 + 2 * DAY_MS]
    expected = card_precision_at_k(
        [o.timestamp // DAY_MS for o in first_two],
        [o.card_id for o in first_two],
        [o.is_fraud for o in first_two],
        [o.score for o in first_two],
        k=10,
    )
    assert np.mean([d.value for d in closed]) == pytest.approx(expected)


def test_empty_window_is_nan() -> None:
    snap = QualityTracker().snapshot()
    assert snap.outcomes == 0 and math.isnan(snap.precision)


def _event(window_end: int, signal: str = "feature:amount") -> dict[str, object]:
    s = DriftSignal(
        "m", "1", "champion", "page_hinkley", signal, 0.5, 0.6, window_end - HOUR_MS, window_end
    )
    return drift_event(s, detected_at_ms=123)


def test_trigger_cooldown_and_deduplication_on_event_time() -> None:
    trigger = RetrainTrigger(MonitorConfig(retrain_cooldown_ms=DAY_MS))
    first = trigger.on_drift(_event(T0), now_ms=1)
    assert first.request is not None
    config = MonitorConfig(retrain_cooldown_ms=DAY_MS)
    assert first.request["window_end"] == T0 + config.retrain_lookback_ms
    assert first.request["drift_start"] == T0 - HOUR_MS and first.request["drift_event_ids"]
    assert trigger.on_drift(_event(T0), now_ms=2).suppressed == "duplicate"  # other instance
    assert trigger.on_drift(_event(T0, "score_mean"), 3).suppressed == "cooldown"
    assert trigger.on_drift(_event(T0 + DAY_MS - 1), 4).suppressed == "cooldown"
    assert trigger.on_drift(_event(T0 + DAY_MS), 5).request is not None


def test_drift_event_id_is_the_same_on_every_instance() -> None:
    assert _event(T0)["event_id"] == _event(T0)["event_id"]
    assert _event(T0)["event_id"] != _event(T0, "score_mean")["event_id"]
