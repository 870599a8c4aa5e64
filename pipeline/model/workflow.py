"""End-to-end steps shared by ``fraud train``, ``fraud evaluate`` and the trainer job.

Features are computed once over the whole frame (each row sees only its own
past), then models are trained and scored on date ranges of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb
from tqdm import tqdm

from pipeline.features import FEATURE_NAMES, feature_matrix
from pipeline.features.spec import DAY_MS
from pipeline.model.errors import ModelError
from pipeline.model.metrics import evaluate_scores
from pipeline.model.params import DEFAULT_PARAMS, TrainParams
from pipeline.model.protocols import (
    Fold,
    FoldResult,
    day_numbers,
    prequential_folds,
    run_fold,
    single_split,
    summarize,
    test_mask,
)
from pipeline.model.training import predict, train_booster

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    """A labelled frame with its feature matrix and calendar days."""

    frame: pd.DataFrame
    features: F32
    days: I64
    card_id: I64
    is_fraud: npt.NDArray[np.int8]
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @property
    def first_day(self) -> date:
        return _date(int(self.days.min()))

    @property
    def last_day(self) -> date:
        return _date(int(self.days.max()))


def prepare(frame: pd.DataFrame, label_delay_days: int = 7) -> Dataset:
    """Compute features for a labelled frame (``is_fraud`` required)."""
    if "is_fraud" not in frame.columns:
        raise ModelError("the data has no is_fraud column: training and evaluation need labels")
    if frame.empty:
        raise ModelError("the data has no transactions")
    matrix = feature_matrix(frame, label_delay_days * DAY_MS)
    return Dataset(
        frame,
        matrix,
        day_numbers(frame["timestamp"]),
        frame["card_id"].to_numpy(np.int64),
        frame["is_fraud"].to_numpy(np.int8),
    )


@dataclass(frozen=True)
class TrainResult:
    """A trained booster, its training range and its holdout metrics (if any)."""

    booster: xgb.Booster
    train_start: date
    train_end: date  # inclusive
    holdout: FoldResult | None


def default_train_range(data: Dataset, delay_days: int, train_days: int = 21) -> tuple[date, date]:
    """The latest ``train_days`` that still leave a delay and a 7-day holdout."""
    end = data.last_day - timedelta(days=delay_days + 7)
    start = max(data.first_day, end - timedelta(days=train_days - 1))
    if end < start:
        raise ModelError("the data is too short to train and hold out a week; pass dates")
    return start, end


def train_model(
    data: Dataset,
    start: date,
    end: date,
    params: TrainParams = DEFAULT_PARAMS,
    delay_days: int = 7,
) -> TrainResult:
    """Train on days [start, end] and test on the week after the label delay when present."""
    if end < start:
        raise ModelError(f"training end {end} is before its start {start}")
    fold = Fold(start, train_days=(end - start).days + 1, delay_days=delay_days)
    holder: dict[str, xgb.Booster] = {}

    def fit_and_score(train: npt.NDArray[np.bool_], test: npt.NDArray[np.bool_]) -> F32:
        holder["booster"] = train_booster(
            data.features[train], data.is_fraud[train], data.feature_names, params
        )
        return predict(holder["booster"], data.features[test])

    holdout: FoldResult | None
    if fold.test_end <= data.last_day + timedelta(days=1):
        holdout = run_fold(data.days, data.card_id, data.is_fraud, fold, fit_and_score)
        booster = holder["booster"]
    else:
        rows = (data.days >= _day(start)) & (data.days <= _day(end))
        if not rows.any():
            raise ModelError(f"no transactions between {start} and {end}")
        booster = train_booster(
            data.features[rows], data.is_fraud[rows], data.feature_names, params
        )
        holdout = None
    return TrainResult(booster, start, end, holdout)


def evaluate_protocol(
    data: Dataset,
    protocol: str,
    params: TrainParams = DEFAULT_PARAMS,
    delay_days: int = 7,
    progress: bool = False,
) -> dict[str, object]:
    """The handbook's ``single`` split or ``prequential`` folds on this data."""
    if protocol == "single":
        folds = [single_split(data.first_day, delay_days)]
    elif protocol == "prequential":
        folds = prequential_folds(data.first_day, delay_days=delay_days)
    else:
        raise ModelError(f"unknown protocol {protocol!r}: use single or prequential")
    results = []
    for fold in tqdm(folds, desc="folds", disable=not progress or None, leave=False):

        def fit_and_score(train: npt.NDArray[np.bool_], test: npt.NDArray[np.bool_]) -> F32:
            booster = train_booster(
                data.features[train], data.is_fraud[train], data.feature_names, params
            )
            return predict(booster, data.features[test])

        results.append(run_fold(data.days, data.card_id, data.is_fraud, fold, fit_and_score))
    if protocol == "single":
        return {**results[0].metrics, "fold": results[0].to_dict()}
    return summarize(results)


def evaluate_booster(
    data: Dataset,
    booster: xgb.Booster,
    model_features: tuple[str, ...],
    start: date | None = None,
    end: date | None = None,
    delay_days: int = 7,
) -> dict[str, object]:
    """Metrics of a trained model on days [start, end] (default: the whole data).

    Cards known compromised (a fraud at least ``delay_days`` + 1 days earlier)
    are left out, as in the protocols.
    """
    if tuple(model_features) != tuple(data.feature_names):
        missing = sorted(set(model_features) - set(data.feature_names))
        if missing:
            raise ModelError(f"the model needs features this version lacks: {', '.join(missing)}")
    columns = [data.feature_names.index(name) for name in model_features]
    first, last = start or data.first_day, end or data.last_day
    rows = test_mask(
        data.days, data.card_id, data.is_fraud, first, last + timedelta(days=1), delay_days
    )
    if not rows.any():
        raise ModelError(f"no transactions to evaluate between {first} and {last}")
    scores = predict(booster, data.features[rows][:, columns])
    metrics: dict[str, object] = dict(
        evaluate_scores(data.days[rows], data.card_id[rows], data.is_fraud[rows], scores)
    )
    metrics["range"] = f"{first}..{last}"
    metrics["rows"] = int(rows.sum())
    return metrics


def _date(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day_number)


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days
