"""A verified model ready to serve: batch predictions and TreeSHAP contributions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost

from pipeline.registry import LoadedModel

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ServingModel:
    """The booster plus what a decision must record about it."""

    name: str
    version: str
    booster: xgboost.Booster
    features: tuple[str, ...]
    feature_set_version: str

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> ServingModel:
        booster = loaded.booster
        # One thread: a scorer process is one core's worth of work; extra
        # threads only fight the Kafka client for the CPU on small batches.
        booster.set_param({"nthread": 1})
        return cls(
            name=loaded.version.name,
            version=loaded.version.label,
            booster=booster,
            features=tuple(loaded.features),
            feature_set_version=loaded.version.feature_set_version,
        )

    def predict(self, matrix: F32) -> F64:
        """Fraud probabilities for a batch (one ``inplace_predict`` call)."""
        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float64)
        scores = self.booster.inplace_predict(matrix, validate_features=False)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def contributions(self, matrix: F32) -> F32:
        """Exact TreeSHAP contributions per feature (bias column dropped), log-odds units."""
        if len(matrix) == 0:
            return np.zeros((0, len(self.features)), dtype=np.float32)
        dmatrix = xgboost.DMatrix(matrix, feature_names=list(self.features), nthread=1)
        contribs = self.booster.predict(dmatrix, pred_contribs=True, validate_features=False)
        return np.asarray(contribs, dtype=np.float32)[:, : len(self.features)]
