"""Train an XGBoost booster on a float32 feature matrix, and score with it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from pipeline.model.errors import ModelError
from pipeline.model.params import DEFAULT_PARAMS, TrainParams

F32 = npt.NDArray[np.float32]


def train_booster(
    features: npt.NDArray[np.floating],
    labels: npt.ArrayLike,
    feature_names: tuple[str, ...] | list[str],
    params: TrainParams = DEFAULT_PARAMS,
) -> xgb.Booster:
    """Fit a booster; the feature names travel inside the model."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(y):
        raise ModelError(f"features {x.shape} and labels ({len(y)}) do not match")
    if x.shape[1] != len(feature_names):
        raise ModelError(f"{x.shape[1]} feature columns but {len(feature_names)} names")
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ModelError("training data must contain both fraud and genuine transactions")
    data = xgb.DMatrix(x, label=y, feature_names=list(feature_names), missing=np.nan)
    return xgb.train(params.booster_params(), data, num_boost_round=params.n_estimators)


def predict(booster: xgb.Booster, features: npt.NDArray[np.floating]) -> F32:
    """Fraud probabilities for a batch (no DMatrix: ``inplace_predict``)."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if len(x) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(booster.inplace_predict(x, missing=np.nan), dtype=np.float32)
