"""Merging per-worker MonitorStats into whole-traffic windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.monitor.config import HOUR_MS, MonitorConfig
from pipeline.monitor.errors import DUPLICATE, INCONSISTENT, INVALID_VALUE, TOO_OLD, InvalidRecord
from pipeline.monitor.records import window_stats
from pipeline.monitor.stats_merge import StatsMerger
from pipeline.monitor.summarize import summarize_windows

T0 = 1_530_403_200_000


def _record(worker: str, window: int, **changes: Any) -> dict[str, Any]:
    record = {
        "worker_id": worker,
        "model_name": "m",
        "model_version": "1",
        "window_start": T0 + window * HOUR_MS,
        "window_end": T0 + (window + 1) * HOUR_MS,
        "count": 10,
        "approved": 10,
        "score_histogram": [10, 0],
        "feature_names": ["amount"],
        "feature_mean": [5.0],
        "feature_std": [1.0],
    }
    record.update(changes)
    return record


def test_pooled_moments_equal_those_of_the_whole_window() -> None:
    rng = np.random.default_rng(3)
    ts = T0 + rng.integers(0, HOUR_MS, 300)
    x = rng.normal(size=(300, 2)) * [1.0, 5.0] + [0.0, 50.0]
    scores = rng.random(300)
    parts = np.arange(300) % 3
    merger = StatsMerger()
    closed = []
    for worker in range(3):
        rows = parts == worker
        (record,) = summarize_windows(
            ts[rows],
            scores[rows],
            x[rows],
            ["a", "b"],
            window_ms=HOUR_MS,
            model_name="m",
            model_version="1",
            worker_id=f"w{worker}",
        )
        closed += merger.add(window_stats(record))
    closed += merger.flush()
    (window,) = closed
    assert window.count == 300 and window.workers == {"w0", "w1", "w2"}
    np.testing.assert_allclose(window.feature_mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(window.feature_std, x.std(axis=0), rtol=1e-12)
    expected, _ = np.histogram(scores, bins=20, range=(0, 1))
    np.testing.assert_array_equal(window.score_histogram, expected)


def test_first_window_waits_for_grace_then_windows_close_when_every_worker_reported() -> None:
    merger = StatsMerger(MonitorConfig(stats_grace_ms=2 * HOUR_MS))
    assert merger.add(window_stats(_record("a", 0))) == []
    assert merger.add(window_stats(_record("b", 0))) == []  # workers unknown yet: wait
    assert merger.add(window_stats(_record("a", 1))) == []
    closed = merger.add(window_stats(_record("a", 2)))  # watermark past window 0 + grace
    assert [w.window_start for w in closed] == [T0]
    assert closed[0].workers == {"a", "b"} and closed[0].count == 20
    closed = merger.add(window_stats(_record("b", 1)))  # both known workers reported 1
    assert [(w.window_start, w.count) for w in closed] == [(T0 + HOUR_MS, 20)]


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (_record("a", 0), DUPLICATE),
        (_record("b", 0, feature_names=["other"]), INCONSISTENT),
        (_record("b", 0, score_histogram=[1, 2, 7]), INCONSISTENT),
    ],
)
def test_bad_second_report_is_rejected_and_state_kept(second: dict[str, Any], reason: str) -> None:
    merger = StatsMerger()
    merger.add(window_stats(_record("a", 0)))
    with pytest.raises(InvalidRecord) as info:
        merger.add(window_stats(second))
    assert info.value.reason == reason
    (window,) = merger.flush()
    assert window.count == 10 and window.workers == {"a"}


def test_report_for_a_closed_window_is_too_old() -> None:
    merger = StatsMerger()
    merger.add(window_stats(_record("a", 0)))
    merger.add(window_stats(_record("a", 5)))
    with pytest.raises(InvalidRecord) as info:
        merger.add(window_stats(_record("b", 0)))
    assert info.value.reason == TOO_OLD


@pytest.mark.parametrize(
    "changes",
    [
        {"window_end": T0},
        {"count": -1},
        {"approved": 11},
        {"score_histogram": [11, 0]},
        {"feature_mean": [1.0, 2.0]},
        {"feature_std": [-1.0]},
        {"feature_mean": [float("inf")]},
        {"model_version": ""},
    ],
)
def test_invalid_values_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as info:
        window_stats(_record("a", 0, **changes))
    assert info.value.reason == INVALID_VALUE


def test_missing_field_is_malformed() -> None:
    record = _record("a", 0)
    del record["count"]
    with pytest.raises(InvalidRecord, match="malformed"):
        window_stats(record)
