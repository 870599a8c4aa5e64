"""The handbook's evaluation protocols: single split and prequential folds.

A fold trains on ``train_days`` days, waits ``delay_days`` (labels of the last
training days are not known before), then tests on ``test_days`` days. Test
transactions of cards already known compromised are removed: on test day D a
card is known when it had a fraud from the training start up to D - delay - 1
(labels of those days are in by D). Dates default to the handbook's offsets
from the data's first day (2018-04-01 -> train 07-25, test 08-08).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.model.errors import ModelError
from pipeline.model.metrics import evaluate_scores

#: Offset of the handbook's single-split training start from the data's first day.
SINGLE_SPLIT_OFFSET_DAYS = 115
#: Offset of the handbook's first prequential test week.
PREQUENTIAL_FIRST_TEST_OFFSET_DAYS = 129

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Scorer = Callable[[npt.NDArray[np.bool_], npt.NDArray[np.bool_]], F32]


@dataclass(frozen=True)
class Fold:
    """One train / delay / test arrangement (end dates exclusive)."""

    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @property
    def train_end(self) -> date:
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        return self.test_start + timedelta(days=self.test_days)

    def describe(self) -> dict[str, str]:
        """Dates for reports (inclusive ends)."""
        last = timedelta(days=1)
        return {
            "train": f"{self.train_start}..{self.train_end - last}",
            "test": f"{self.test_start}..{self.test_end - last}",
        }


def single_split(data_start: date, delay_days: int = 7) -> Fold:
    """The chapter-3 split, placed relative to the data's first day."""
    return Fold(data_start + timedelta(days=SINGLE_SPLIT_OFFSET_DAYS), delay_days=delay_days)


def prequential_folds(
    data_start: date, n_folds: int = 4, delay_days: int = 7, first_test: date | None = None
) -> list[Fold]:
    """Weekly folds; test weeks start at ``first_test`` (default: handbook offset) + 7 i."""
    if n_folds < 1:
        raise ModelError("need at least one fold")
    first = first_test or data_start + timedelta(days=PREQUENTIAL_FIRST_TEST_OFFSET_DAYS)
    return [
        Fold(first + timedelta(days=7 * i) - timedelta(days=7 + delay_days), delay_days=delay_days)
        for i in range(n_folds)
    ]


def day_numbers(timestamps: pd.Series) -> I64:
    """Calendar day (days since 1970-01-01, UTC) of each timestamp."""
    ts = pd.to_datetime(timestamps, utc=True).dt.tz_localize(None)
    days: I64 = ts.to_numpy("datetime64[D]").astype(np.int64)
    return days


def _day(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def fold_masks(
    days: I64, card_id: I64, is_fraud: npt.ArrayLike, fold: Fold
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(train rows, test rows without known-compromised cards) of a fold."""
    train = (days >= _day(fold.train_start)) & (days < _day(fold.train_end))
    test = test_mask(
        days, card_id, is_fraud, fold.test_start, fold.test_end, fold.delay_days, fold.train_start
    )
    return train, test


def test_mask(
    days: I64,
    card_id: I64,
    is_fraud: npt.ArrayLike,
    start: date,
    end: date,
    delay_days: int,
    known_since: date | None = None,
) -> npt.NDArray[np.bool_]:
    """Rows of days in [start, end) whose card was not known compromised that day.

    A card is known compromised on day D when it had a fraud on a day in
    [known_since, D - delay - 1] (default: since the data's first day).
    """
    fraud = np.asarray(is_fraud).astype(bool)
    since = _day(known_since) if known_since is not None else (int(days.min()) if len(days) else 0)
    mask = np.zeros(len(days), dtype=bool)
    for test_day in range(_day(start), _day(end)):
        known_rows = fraud & (days >= since) & (days <= test_day - delay_days - 1)
        known = np.unique(card_id[known_rows])
        rows = days == test_day
        mask |= rows & ~np.isin(card_id, known)
    return mask


@dataclass(frozen=True)
class FoldResult:
    """Metrics of one fold and its sizes."""

    fold: Fold
    metrics: dict[str, float]
    train_rows: int
    test_rows: int

    def to_dict(self) -> dict[str, object]:
        return {
            **self.fold.describe(),
            **self.metrics,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
        }


def run_fold(
    days: I64, card_id: I64, is_fraud: npt.ArrayLike, fold: Fold, fit_and_score: Scorer
) -> FoldResult:
    """Train on the fold's training rows and score its test rows.

    ``fit_and_score(train_mask, test_mask)`` returns scores of the test rows.
    """
    train, test = fold_masks(days, card_id, is_fraud, fold)
    y = np.asarray(is_fraud).astype(np.int8)
    if not train.any() or not test.any():
        raise ModelError(
            f"fold {fold.describe()} has no training or test rows in this data "
            "(pass dates that the data covers)"
        )
    scores = fit_and_score(train, test)
    metrics = evaluate_scores(days[test], card_id[test], y[test], scores)
    return FoldResult(fold, metrics, int(train.sum()), int(test.sum()))


def summarize(results: list[FoldResult]) -> dict[str, object]:
    """Means of the metrics, their standard deviations and the per-fold values."""
    keys = list(results[0].metrics)
    summary: dict[str, object] = {
        key: float(np.mean([r.metrics[key] for r in results])) for key in keys
    }
    summary["std"] = {key: float(np.std([r.metrics[key] for r in results])) for key in keys}
    summary["folds"] = [r.to_dict() for r in results]
    return summary
