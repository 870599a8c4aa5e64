"""Small XGBoost models and registry records for the compiled-ensemble tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from pipeline.registry import LoadedModel
from pipeline.registry.records import ModelVersion

VARIANTS: list[tuple[int, int, float, dict[str, Any]]] = [
    (1, 10, 0.5, {}),
    (2, 40, 0.3, {}),
    (3, 100, 0.5, {}),
    (3, 100, 0.02, {"max_delta_step": 1.0}),
    (4, 60, 0.9, {"subsample": 0.7, "colsample_bytree": 0.6}),
    (5, 30, 0.123456, {"eta": 1.0}),
    (6, 200, 0.5, {"eta": 0.1}),
    (3, 20, 0.4, {"num_parallel_tree": 3, "subsample": 0.6}),
    (3, 50, 0.5, {"tree_method": "hist"}),
]
"""(depth, rounds, base_score, extra params) of the boosters both tests compare on."""


def train(x: np.ndarray, y: np.ndarray, seed: int, rounds: int, **params: Any) -> xgb.Booster:
    """A binary:logistic booster (exact trees, one thread) on ``x``, NaN as missing."""
    settings = {
        "objective": "binary:logistic",
        "tree_method": "exact",
        "eta": 0.3,
        "nthread": 1,
        "seed": seed,
        "verbosity": 0,
        **params,
    }
    booster = xgb.train(settings, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
    booster.set_param({"nthread": 1})
    return booster


def loaded(booster: xgb.Booster, n_features: int) -> LoadedModel:
    """``booster`` as the registry hands it out, with features ``f0 .. f{n-1}``."""
    version = ModelVersion(
        name="fraud",
        version=3,
        path=Path("/nonexistent"),
        created_at="2024-01-01T00:00:00Z",
        artifact_file="model.ubj",
        sha256="0" * 64,
        features=tuple(f"f{i}" for i in range(n_features)),
        feature_set_version="test",
        data_range=("2024-01-01", "2024-01-08"),
        metrics={},
        params={},
        lineage={},
        xgboost_version=xgb.__version__,
        metadata={},
    )
    return LoadedModel(booster=booster, version=version)
