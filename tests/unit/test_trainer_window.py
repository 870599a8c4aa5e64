"""Window selection of the trainer: holdout = latest mature days, training favours post-drift."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features.spec import DAY_MS
from pipeline.trainer import NotEnoughDataError, WindowPolicy, choose_windows

FIRST = 17_700  # a day number (2018-06-18)


def days_with(frauds_per_day: list[int], rows_per_day: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Rows of consecutive days from FIRST, with the given frauds each day."""
    days, fraud = [], []
    for offset, frauds in enumerate(frauds_per_day):
        days += [FIRST + offset] * rows_per_day
        fraud += [1] * frauds + [0] * (rows_per_day - frauds)
    return np.array(days, dtype=np.int64), np.array(fraud, dtype=np.int8)


def test_holdout_is_the_latest_days_and_training_the_days_before() -> None:
    days, fraud = days_with([2] * 40)
    windows = choose_windows(days, fraud, WindowPolicy(holdout_days=7, train_days=21))
    assert (windows.holdout.first, windows.holdout.last) == (FIRST + 33, FIRST + 39)
    assert (windows.train.first, windows.train.last) == (FIRST + 12, FIRST + 32)
    assert not windows.post_drift
    assert not (windows.train.mask(days) & windows.holdout.mask(days)).any()


def test_short_history_trains_on_every_day_before_the_holdout() -> None:
    days, fraud = days_with([1] * 10)
    windows = choose_windows(days, fraud, WindowPolicy(holdout_days=3, train_days=21))
    assert (windows.train.first, windows.train.last) == (FIRST, FIRST + 6)
    assert str(windows.train) == "2018-06-18..2018-06-24"


def test_enough_post_drift_frauds_train_on_post_drift_days_only() -> None:
    days, fraud = days_with([1] * 20 + [10] * 20)
    drift_ms = (FIRST + 20) * DAY_MS + 3_600_000
    policy = WindowPolicy(holdout_days=7, train_days=30, min_post_drift_frauds=100)
    windows = choose_windows(days, fraud, policy, drift_start_ms=drift_ms)
    assert windows.post_drift
    assert (windows.train.first, windows.train.last) == (FIRST + 20, FIRST + 32)
    assert "130 labelled frauds since 2018-07-08" in windows.note


def test_too_few_post_drift_frauds_fall_back_to_the_last_days() -> None:
    days, fraud = days_with([3] * 40)
    drift_ms = (FIRST + 30) * DAY_MS
    policy = WindowPolicy(holdout_days=7, train_days=21, min_post_drift_frauds=100)
    windows = choose_windows(days, fraud, policy, drift_start_ms=drift_ms)
    assert not windows.post_drift
    assert (windows.train.first, windows.train.last) == (FIRST + 12, FIRST + 32)
    assert "only 9 labelled frauds since the drift" in windows.note


def test_drift_inside_the_holdout_leaves_the_recent_window() -> None:
    days, fraud = days_with([3] * 30)
    windows = choose_windows(days, fraud, WindowPolicy(7, 10, 1), (FIRST + 28) * DAY_MS)
    assert not windows.post_drift
    assert (windows.train.first, windows.train.last) == (FIRST + 13, FIRST + 22)
    assert "after the training days" in windows.note


def test_holdout_counts_calendar_days_from_the_last_labelled_day() -> None:
    days, fraud = days_with([2] * 30)
    keep = (days < FIRST + 20) | (days == FIRST + 29)  # a gap of 9 days, then one day
    windows = choose_windows(days[keep], fraud[keep], WindowPolicy(holdout_days=7, train_days=5))
    assert (windows.holdout.first, windows.holdout.last) == (FIRST + 23, FIRST + 29)
    assert (windows.train.first, windows.train.last) == (FIRST + 18, FIRST + 22)


@pytest.mark.parametrize(
    ("frauds", "policy", "message"),
    [
        ([], WindowPolicy(), "no mature labelled decisions"),
        ([1] * 5, WindowPolicy(holdout_days=7), "need more than the 7-day holdout"),
        ([0] * 20 + [1] * 7, WindowPolicy(7, 21), "no labelled fraud in the training days"),
        ([1] * 20 + [0] * 7, WindowPolicy(7, 21), "no labelled fraud in the holdout"),
    ],
)
def test_not_enough_labelled_data_is_one_clear_error(
    frauds: list[int], policy: WindowPolicy, message: str
) -> None:
    days, fraud = days_with(frauds)
    with pytest.raises(NotEnoughDataError, match=message):
        choose_windows(days, fraud, policy)


def test_all_fraud_training_days_are_refused() -> None:
    days, fraud = days_with([5] * 10, rows_per_day=5)
    with pytest.raises(NotEnoughDataError, match="no genuine transaction"):
        choose_windows(days, fraud, WindowPolicy(holdout_days=2))


def test_policy_rejects_empty_windows() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        WindowPolicy(holdout_days=0)
