"""A verified model ready to serve: batch predictions and TreeSHAP contributions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numba
import numpy as np
import numpy.typing as npt
import xgboost

from pipeline.model.errors import ModelError
from pipeline.registry import LoadedModel
from pipeline.scoring.trees import CompiledEnsemble, compile_booster

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """The booster plus what a decision must record about it.

    ``compiled``, when present, is the booster's trees as a compiled kernel
    that was checked to give XGBoost's scores; ``predict`` uses it. Its
    ``shap``, when present, was checked to give XGBoost's TreeSHAP values;
    ``contributions`` uses it. Everything else stays with the booster.
    """

    name: str
    version: str
    booster: xgboost.Booster
    features: tuple[str, ...]
    feature_set_version: str
    compiled: CompiledEnsemble | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> ServingModel:
        booster = loaded.booster
        # One thread: a scorer process is one core's worth of work; extra
        # threads only fight the Kafka client for the CPU on small batches.
        booster.set_param({"nthread": 1})
        features = tuple(loaded.features)
        label = f"{loaded.version.name} {loaded.version.label}"
        return cls(
            name=loaded.version.name,
            version=loaded.version.label,
            booster=booster,
            features=features,
            feature_set_version=loaded.version.feature_set_version,
            compiled=verified_ensemble(booster, len(features), label),
        )

    def predict(self, matrix: F32) -> F64:
        """Fraud probabilities for a batch (the compiled kernel, else ``inplace_predict``)."""
        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float64)
        compiled = self.compiled
        if compiled is not None and matrix.ndim == 2 and matrix.shape[1] == compiled.n_features:
            return compiled.predict(matrix).astype(np.float64)
        scores = self.booster.inplace_predict(matrix, validate_features=False)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def contributions(self, matrix: F32) -> F32:
        """Exact TreeSHAP contributions per feature (bias column dropped), log-odds units.

        The compiled tables when they passed their check, else XGBoost's
        ``pred_contribs``.
        """
        if len(matrix) == 0:
            return np.zeros((0, len(self.features)), dtype=np.float32)
        shap = self.compiled.shap if self.compiled is not None else None
        if shap is not None and matrix.ndim == 2 and matrix.shape[1] == shap.n_features:
            return shap.contributions(matrix)[:, : len(self.features)]
        dmatrix = xgboost.DMatrix(matrix, feature_names=list(self.features), nthread=1)
        contribs = self.booster.predict(dmatrix, pred_contribs=True, validate_features=False)
        return np.asarray(contribs, dtype=np.float32)[:, : len(self.features)]


def verified_ensemble(
    booster: xgboost.Booster, n_features: int, label: str = "model"
) -> CompiledEnsemble | None:
    """The booster compiled, if supported and it scores a probe matrix as XGBoost does.

    Runs once per model load. The check also compiles the kernel (or loads it
    from numba's on-disk cache), so no scored batch waits for the compiler.
    A model that is not supported, or whose compiled scores differ, is served
    by XGBoost (with a warning for a difference: that is a defect to look at).
    The TreeSHAP tables get the same check on the same probe rows; when they
    differ, the ensemble is kept for scores and XGBoost explains.
    """
    compiled = compile_booster(booster, n_features)
    if compiled is None:
        return None
    try:
        problem = compiled.mismatch(booster)
    except (numba.core.errors.NumbaError, xgboost.core.XGBoostError, ModelError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("%s: compiled trees not used, xgboost predicts: %s", label, problem)
        return None
    log.info(
        "%s: %d trees compiled (depth %d), scores equal to xgboost's on the probe rows",
        label,
        compiled.n_trees,
        compiled.depth,
    )
    if compiled.shap is None:
        return compiled
    try:
        problem = compiled.shap.mismatch(booster, compiled.probe_matrix())
    except (numba.core.errors.NumbaError, xgboost.core.XGBoostError, ModelError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("%s: compiled TreeSHAP not used, xgboost explains: %s", label, problem)
        return replace(compiled, shap=None)
    log.info("%s: TreeSHAP compiled, contributions equal to xgboost's on the probe rows", label)
    return compiled
