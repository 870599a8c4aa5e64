"""The handbook's metrics: AUC ROC, average precision, card precision@k."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.model.errors import ModelError

ArrayLike = npt.ArrayLike


def auc_roc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (needs both classes)."""
    y = np.asarray(y_true)
    if len(np.unique(y)) < 2:
        raise ModelError("AUC ROC needs both fraud and genuine transactions")
    return float(roc_auc_score(y, np.asarray(score)))


def average_precision(y_true: ArrayLike, score: ArrayLike) -> float:
    """scikit-learn's average precision (the area under the precision-recall step curve)."""
    y = np.asarray(y_true)
    if not y.any():
        raise ModelError("average precision needs at least one fraud")
    return float(average_precision_score(y, np.asarray(score)))


def card_precision_at_k(
    day: ArrayLike, card_id: ArrayLike, y_true: ArrayLike, score: ArrayLike, k: int = 100
) -> float:
    """Mean over days of the share of compromised cards among the day's top ``k`` cards.

    Each day, cards are ranked by their highest transaction score (ties: lower
    card id first); a card is compromised that day when any of its transactions
    is fraud. Cards detected (compromised and in a top ``k``) on an earlier day
    are left out of later days, as an investigator would already have blocked
    them. The denominator is always ``k``.
    """
    if k < 1:
        raise ModelError(f"k must be >= 1, got {k}")
    days = np.asarray(day)
    cards = np.asarray(card_id, dtype=np.int64)
    labels = np.asarray(y_true).astype(bool)
    scores = np.asarray(score, dtype=np.float64)
    if not len(days):
        raise ModelError("card precision@k needs at least one transaction")
    detected: set[int] = set()
    per_day: list[float] = []
    for current in np.unique(days):
        rows = days == current
        c, y, s = cards[rows], labels[rows], scores[rows]
        if detected:
            keep = ~np.isin(c, np.fromiter(detected, dtype=np.int64))
            c, y, s = c[keep], y[keep], s[keep]
        uniq, inverse = np.unique(c, return_inverse=True)
        best = np.full(len(uniq), -np.inf)
        np.maximum.at(best, inverse, s)
        compromised = np.zeros(len(uniq), dtype=bool)
        np.logical_or.at(compromised, inverse, y)
        top = np.lexsort((uniq, -best))[:k]
        hits = uniq[top][compromised[top]]
        per_day.append(len(hits) / k)
        detected.update(hits.tolist())
    return float(np.mean(per_day))


def evaluate_scores(
    day: ArrayLike, card_id: ArrayLike, y_true: ArrayLike, score: ArrayLike, k: int = 100
) -> dict[str, float]:
    """All three metrics as the CLI reports them."""
    return {
        "auc_roc": auc_roc(y_true, score),
        "average_precision": average_precision(y_true, score),
        f"card_precision_at_{k}": card_precision_at_k(day, card_id, y_true, score, k),
    }
