"""Reason codes from exact TreeSHAP contributions.

For each flagged transaction the features that pushed its score up the most,
with the feature's human-readable text and value, e.g. ``amount far above the
card's usual (30d mean) = 5.12``. :func:`top_positive` is the one selection
rule; the scorer's served reasons (:mod:`pipeline.scoring.reasons`) use it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from pipeline.features.spec import describe
from pipeline.model.errors import ModelError


@dataclass(frozen=True)
class Reason:
    """One feature's push towards fraud for one transaction."""

    feature: str
    value: float
    contribution: float  # log-odds added by this feature (TreeSHAP)
    text: str

    def to_dict(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "text": self.text,
        }


def contributions(
    booster: xgb.Booster, features: npt.NDArray[np.floating]
) -> npt.NDArray[np.float32]:
    """TreeSHAP contributions per feature (bias column dropped), shape (rows, features)."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0), dtype=np.float32)
    names = booster.feature_names
    data = xgb.DMatrix(x, feature_names=names, missing=np.nan)
    contrib = np.asarray(booster.predict(data, pred_contribs=True), dtype=np.float32)
    return contrib[:, :-1]


def reason_codes(
    booster: xgb.Booster,
    features: npt.NDArray[np.floating],
    feature_names: list[str] | tuple[str, ...] | None = None,
    top_k: int = 3,
) -> list[list[Reason]]:
    """Up to ``top_k`` reasons per row: features with the largest positive contributions."""
    if top_k < 1:
        raise ModelError("top_k must be >= 1")
    names = list(feature_names or booster.feature_names or [])
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or (len(x) and x.shape[1] != len(names)):
        raise ModelError("feature matrix does not match the model's feature names")
    contrib = contributions(booster, x)
    return [
        [
            Reason(
                names[col],
                float(x[row, col]),
                float(contrib[row, col]),
                reason_text(names[col], float(x[row, col])),
            )
            for col in cols
        ]
        for row, cols in enumerate(top_positive(contrib, top_k))
    ]


def top_positive(contrib: npt.NDArray[np.floating], k: int) -> list[list[int]]:
    """Per row, the columns of up to ``k`` largest contributions that are positive.

    Only features that raised the fraud score are reasons, largest first.
    """
    if len(contrib) == 0:
        return []
    k = min(k, contrib.shape[1])
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(contrib, order, axis=1) > 0.0
    # As lists first: per-row numpy indexing costs about a microsecond a row.
    return [
        [column for column, keep in zip(row, keeps, strict=True) if keep]
        for row, keeps in zip(order.tolist(), picked.tolist(), strict=True)
    ]


def reason_text(feature: str, value: float) -> str:
    """``<what the feature means> = <value>`` (``unknown`` for a missing value)."""
    shown = "unknown" if math.isnan(value) else f"{value:.4g}"
    return f"{describe(feature)} = {shown}"
