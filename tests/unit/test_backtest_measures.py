"""The backtest's per-day and curve measures agree with the metrics module."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backtest.measures import (
    CURVE_POINTS,
    at_threshold,
    curves,
    daily_card_precision,
    daily_counts,
    score_histogram,
)
from pipeline.model import average_precision, card_precision_at_k


@pytest.mark.parametrize("k", [1, 3, 10])
def test_daily_card_precision_averages_to_the_metric(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 3000
    day = rng.integers(17600, 17614, n)
    card = rng.integers(0, 60, n)
    fraud = (rng.random(n) < 0.05) | np.isin(card, [3, 7, 11])  # repeat offenders get detected
    score = np.where(fraud, rng.random(n) * 0.6 + 0.3, rng.random(n) * 0.7)
    daily = daily_card_precision(day, card, fraud, score, k)
    assert len(daily) == 14
    assert np.all(np.isclose(daily * k, np.round(daily * k)))  # hits / k
    assert daily.mean() == pytest.approx(card_precision_at_k(day, card, fraud, score, k), abs=1e-12)


def test_detected_cards_leave_later_days() -> None:
    day = np.array([0, 0, 1, 1])
    card = np.array([1, 2, 1, 2])
    fraud = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.1, 0.9, 0.1])
    assert daily_card_precision(day, card, fraud, score, 1).tolist() == [1.0, 0.0]


def test_daily_counts_keep_days_without_flags() -> None:
    days = np.array([5, 5, 6, 8])
    counts = daily_counts(days, [True, True, False, True], np.array([5, 6, 8]))
    assert counts.tolist() == [2, 0, 1]


def test_threshold_precision_recall_and_empty_cases() -> None:
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.1, 0.5])
    result = at_threshold(y, s, 0.5)
    assert (result.alerts, result.true_alerts, result.frauds) == (3, 1, 2)
    assert result.precision == pytest.approx(1 / 3) and result.recall == 0.5
    assert at_threshold(y, s, 0.95).precision is None
    assert at_threshold(np.zeros(5), s, 0.5).recall is None


def test_curves_are_thinned_and_span_the_range() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.1
    s = np.where(y, rng.random(20_000) * 0.5 + 0.5, rng.random(20_000))
    c = curves(y, s)
    assert len(c.recall) <= CURVE_POINTS and len(c.false_positive_rate) <= CURVE_POINTS
    assert c.recall.max() == 1.0 and c.recall.min() == 0.0
    assert c.false_positive_rate[0] == 0.0 and c.true_positive_rate[-1] == 1.0
    assert np.all(np.diff(c.false_positive_rate) >= 0)
    # The thinned PR curve still integrates to about the average precision.
    area = float(-np.sum(np.diff(c.recall) * c.precision[:-1]))
    assert area == pytest.approx(average_precision(y, s), abs=0.02)


def test_score_histogram_counts_every_row() -> None:
    y = np.array([0, 0, 1, 1, 1])
    h = score_histogram(y, [0.0, 0.5, 0.99, 1.0, 0.42])
    assert h.genuine.sum() == 2 and h.fraud.sum() == 3 and len(h.edges) == len(h.genuine) + 1
    assert h.fraud[-1] == 2  # 0.99 and 1.0 land in the last bin
