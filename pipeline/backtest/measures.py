"""Per-day and curve measures of one model's scores, as plain arrays.

The headline metrics come from :mod:`pipeline.model.metrics`; this module adds
what a report plots: card precision@k day by day, alert counts per day, the
precision-recall and ROC curves, and score histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve, roc_curve

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Curves are thinned to about this many points: enough for a plot, small in JSON.
CURVE_POINTS = 400
#: Score histogram bins over [0, 1].
HISTOGRAM_BINS = 50


def daily_card_precision(
    day: npt.ArrayLike, card_id: npt.ArrayLike, y_true: npt.ArrayLike, score: npt.ArrayLike, k: int
) -> F64:
    """Card precision@k of each day, in day order (their mean is the handbook's metric).

    Same definition as :func:`pipeline.model.metrics.card_precision_at_k`:
    cards ranked by their highest score of the day (ties: lower card id
    first), compromised when any transaction of the day is fraud, cards
    detected on an earlier day left out, denominator always ``k``.
    """
    days = np.asarray(day)
    cards = np.asarray(card_id, dtype=np.int64)
    labels = np.asarray(y_true).astype(bool)
    scores = np.asarray(score, dtype=np.float64)
    detected = np.zeros(0, dtype=np.int64)
    values: list[float] = []
    for current in np.unique(days):
        rows = days == current
        c, y, s = cards[rows], labels[rows], scores[rows]
        keep = ~np.isin(c, detected)
        c, y, s = c[keep], y[keep], s[keep]
        unique_cards, inverse = np.unique(c, return_inverse=True)
        best = np.full(len(unique_cards), -np.inf)
        np.maximum.at(best, inverse, s)
        compromised = np.zeros(len(unique_cards), dtype=bool)
        np.logical_or.at(compromised, inverse, y)
        top = np.lexsort((unique_cards, -best))[:k]
        hits = unique_cards[top][compromised[top]]
        values.append(len(hits) / k)
        detected = np.concatenate([detected, hits])
    return np.asarray(values, dtype=np.float64)


def daily_counts(day: npt.ArrayLike, flags: npt.ArrayLike, all_days: I64) -> I64:
    """How many ``flags`` are set on each of ``all_days`` (days without rows count 0)."""
    days = np.asarray(day, dtype=np.int64)
    chosen = np.asarray(flags).astype(bool)
    position = np.searchsorted(all_days, days[chosen])
    return np.bincount(position, minlength=len(all_days)).astype(np.int64)


@dataclass(frozen=True)
class ThresholdResult:
    """Transaction-level precision and recall of the alerts at one threshold."""

    threshold: float
    alerts: int
    true_alerts: int
    frauds: int

    @property
    def precision(self) -> float | None:
        """Share of alerts that are fraud (``None`` without alerts)."""
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        """Share of frauds alerted (``None`` without frauds)."""
        return self.true_alerts / self.frauds if self.frauds else None


def at_threshold(y_true: npt.ArrayLike, score: npt.ArrayLike, threshold: float) -> ThresholdResult:
    """Alerts are scores at or above ``threshold``, as the decision policy flags them."""
    y = np.asarray(y_true).astype(bool)
    alerted = np.asarray(score, dtype=np.float64) >= threshold
    return ThresholdResult(
        threshold=float(threshold),
        alerts=int(alerted.sum()),
        true_alerts=int((alerted & y).sum()),
        frauds=int(y.sum()),
    )


@dataclass(frozen=True)
class Curves:
    """Precision-recall and ROC curves, thinned for plotting."""

    recall: F64
    precision: F64
    false_positive_rate: F64
    true_positive_rate: F64


def curves(y_true: npt.ArrayLike, score: npt.ArrayLike) -> Curves:
    """The two curves of scikit-learn, each cut down to about :data:`CURVE_POINTS` points."""
    y = np.asarray(y_true).astype(np.int8)
    s = np.asarray(score, dtype=np.float64)
    precision, recall, _ = precision_recall_curve(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    keep_pr, keep_roc = _thin(len(recall)), _thin(len(fpr))
    return Curves(
        recall=np.asarray(recall, np.float64)[keep_pr],
        precision=np.asarray(precision, np.float64)[keep_pr],
        false_positive_rate=np.asarray(fpr, np.float64)[keep_roc],
        true_positive_rate=np.asarray(tpr, np.float64)[keep_roc],
    )


def _thin(n: int) -> I64:
    """Evenly spaced indices, first and last kept."""
    if n <= CURVE_POINTS:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(np.int64))


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of genuine and fraud scores in equal bins over [0, 1]."""

    edges: F64
    genuine: I64
    fraud: I64


def score_histogram(y_true: npt.ArrayLike, score: npt.ArrayLike) -> ScoreHistogram:
    """Histograms of the scores of genuine and of fraud transactions."""
    y = np.asarray(y_true).astype(bool)
    s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    genuine, _ = np.histogram(s[~y], bins=edges)
    fraud, _ = np.histogram(s[y], bins=edges)
    return ScoreHistogram(edges, genuine.astype(np.int64), fraud.astype(np.int64))
