"""The model: explicit XGBoost parameters, training, metrics, protocols, explanations."""

from pipeline.model.errors import ModelError
from pipeline.model.explain import Reason, contributions, reason_codes, reason_text
from pipeline.model.metrics import (
    auc_roc,
    average_precision,
    card_precision_at_k,
    evaluate_scores,
)
from pipeline.model.params import DEFAULT_PARAMS, HANDBOOK_PARAMS, TrainParams
from pipeline.model.protocols import (
    Fold,
    FoldResult,
    day_numbers,
    fold_masks,
    prequential_folds,
    run_fold,
    single_split,
    summarize,
)
from pipeline.model.training import predict, train_booster

__all__ = [
    "DEFAULT_PARAMS",
    "HANDBOOK_PARAMS",
    "Fold",
    "FoldResult",
    "ModelError",
    "Reason",
    "TrainParams",
    "auc_roc",
    "average_precision",
    "card_precision_at_k",
    "contributions",
    "day_numbers",
    "evaluate_scores",
    "fold_masks",
    "predict",
    "prequential_folds",
    "reason_codes",
    "reason_text",
    "run_fold",
    "single_split",
    "summarize",
    "train_booster",
]
