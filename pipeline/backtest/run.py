"""Score a stretch of history with several registered models and measure each.

Features are computed once, by the offline evaluator over the whole file up to
the last scored day (so every row has its full history), and every model then
scores the same rows through :class:`~pipeline.scoring.ServingModel`, the code
the streaming scorer serves with. Everything the report shows is computed here
as data; plotting and rendering only read it.

Rows scored are those of the chosen days whose card was not yet known to be
compromised (a fraud at least the label delay + 1 days earlier): a bank would
have blocked such a card, and ``fraud evaluate --model`` measures the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from pipeline.backtest.errors import BacktestError
from pipeline.backtest.measures import (
    Curves,
    ScoreHistogram,
    ThresholdResult,
    at_threshold,
    curves,
    daily_card_precision,
    daily_counts,
    score_histogram,
)
from pipeline.errors import FraudError
from pipeline.features import FEATURE_NAMES, feature_matrix
from pipeline.features.spec import DAY_MS
from pipeline.model.metrics import evaluate_scores
from pipeline.model.protocols import day_numbers, test_mask
from pipeline.policy import DecisionPolicy
from pipeline.registry import LoadedModel, ModelRegistry, ModelVersion, RegistryError
from pipeline.scoring import ServingModel

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Days at the start of a file left unscored by default, so card and terminal
#: windows (up to 30 days) are full when scoring begins.
WARMUP_DAYS = 30


@dataclass(frozen=True)
class BacktestConfig:
    """What to score and how to judge it."""

    start: date | None = None  # default: the data's first day + WARMUP_DAYS
    end: date | None = None  # inclusive; default: the data's last day
    capacity: int = 100  # alerts an analyst team handles per day
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)
    shap_sample: int = 5000  # rows explained for mean |SHAP|; 0 skips it
    seed: int = 0  # of the SHAP sample
    label_delay_days: int = 7
    k: int = 100  # card precision@k

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise BacktestError(f"capacity must be >= 1, got {self.capacity}")
        if self.shap_sample < 0:
            raise BacktestError(f"shap_sample must be >= 0, got {self.shap_sample}")
        if self.k < 1:
            raise BacktestError(f"k must be >= 1, got {self.k}")
        if self.label_delay_days < 0:
            raise BacktestError("label_delay_days must be >= 0")


@dataclass(frozen=True)
class DataWindow:
    """The data and the days that were scored."""

    source: str
    data_start: date
    data_end: date
    start: date
    end: date
    days: tuple[date, ...]  # days with scored transactions, in order
    transactions: int  # all transactions of the chosen days
    scored: int  # those left after removing known-compromised cards
    frauds: int  # frauds among the scored
    daily_transactions: I64
    daily_frauds: I64

    @property
    def excluded(self) -> int:
        """Transactions of cards already known compromised, not scored."""
        return self.transactions - self.scored


@dataclass(frozen=True)
class ModelResult:
    """Everything measured for one model on the window."""

    requested: str  # the reference as given (``champion``, ``v3``)
    version: ModelVersion
    metrics: dict[str, float]  # auc_roc, average_precision, card_precision_at_<k>
    daily_card_precision: F64
    daily_alerts: I64  # review + decline
    daily_declines: I64
    alerts: ThresholdResult  # at the review threshold
    declines: ThresholdResult  # at the decline threshold
    curves: Curves
    histogram: ScoreHistogram
    mean_abs_shap: dict[str, float]  # feature -> mean |contribution| (log-odds)
    shap_rows: int

    @property
    def name(self) -> str:
        """How the report names the model: ``champion (v3)``, or ``v3`` alone."""
        label = self.version.label
        return self.requested if self.requested == label else f"{self.requested} ({label})"


@dataclass(frozen=True)
class BacktestResult:
    """The window, the settings and one result per model, in the order given."""

    window: DataWindow
    config: BacktestConfig
    models: tuple[ModelResult, ...]


def load_models(registry: ModelRegistry, refs: Sequence[str]) -> list[tuple[str, LoadedModel]]:
    """Load each reference, checked like the scorer checks it (sha256, feature list)."""
    cleaned = [ref.strip() for ref in refs if ref.strip()]
    if not cleaned:
        raise BacktestError("give at least one model reference, e.g. --models champion")
    repeated = sorted({ref for ref in cleaned if cleaned.count(ref) > 1})
    if repeated:
        raise BacktestError(f"model reference(s) given twice: {', '.join(repeated)}")
    loaded = []
    for ref in cleaned:
        try:
            loaded.append((ref, registry.load(ref, expected_features=FEATURE_NAMES)))
        except RegistryError as exc:
            raise BacktestError(f"cannot backtest model {ref!r}: {exc}") from exc
    return loaded


def run_backtest(
    frame: pd.DataFrame,
    models: Sequence[tuple[str, LoadedModel]],
    config: BacktestConfig,
    *,
    source: str = "",
    progress: bool = False,
) -> BacktestResult:
    """Score the configured days of ``frame`` with every model and measure each.

    ``frame`` is a validated transactions frame with labels (``is_fraud``).
    """
    if not models:
        raise BacktestError("no models to backtest")
    if "is_fraud" not in frame.columns:
        raise BacktestError("the data has no is_fraud column: a backtest needs labels")
    if frame.empty:
        raise BacktestError("the data has no transactions")
    bar = tqdm(
        total=1 + 2 * len(models), desc="features", disable=not progress or None, leave=False
    )
    try:
        return _run(frame, models, config, source, bar)
    finally:
        bar.close()


def _run(
    frame: pd.DataFrame,
    models: Sequence[tuple[str, LoadedModel]],
    config: BacktestConfig,
    source: str,
    bar: tqdm,  # type: ignore[type-arg]
) -> BacktestResult:
    days = day_numbers(frame["timestamp"])
    data_start, data_end = _date(int(days.min())), _date(int(days.max()))
    start = config.start or data_start + timedelta(days=WARMUP_DAYS)
    end = config.end or data_end
    in_range = (days >= _day(start)) & (days <= _day(end))
    if start > end or not in_range.any():
        hint = "" if config.start else f" (by default scoring starts {WARMUP_DAYS} days in)"
        raise BacktestError(
            f"no transactions to score between {start} and {end}: the data covers "
            f"{data_start}..{data_end}{hint}"
        )
    # Features look only backwards: rows after the window are not needed.
    kept = days <= _day(end)
    history = frame[kept]
    matrix = feature_matrix(history, config.label_delay_days * DAY_MS)
    bar.update()
    days, in_range = days[kept], in_range[kept]
    card = history["card_id"].to_numpy(np.int64)
    fraud = history["is_fraud"].to_numpy(np.int8)
    scored = test_mask(
        days, card, fraud, start, end + timedelta(days=1), config.label_delay_days, data_start
    )
    if not scored.any():
        raise BacktestError(f"every transaction between {start} and {end} is of a known card")
    rows = _Rows(
        features=np.ascontiguousarray(matrix[scored]),
        days=days[scored],
        card=card[scored],
        fraud=fraud[scored],
        all_days=np.unique(days[scored]),
        sample=_sample(int(scored.sum()), config.shap_sample, config.seed),
    )
    window = DataWindow(
        source=source,
        data_start=data_start,
        data_end=data_end,
        start=start,
        end=end,
        days=tuple(_date(int(d)) for d in rows.all_days),
        transactions=int(in_range.sum()),
        scored=len(rows.days),
        frauds=int(rows.fraud.sum()),
        daily_transactions=daily_counts(rows.days, np.ones(len(rows.days)), rows.all_days),
        daily_frauds=daily_counts(rows.days, rows.fraud, rows.all_days),
    )
    results = []
    for requested, loaded in models:
        bar.set_description(f"scoring {requested}")
        results.append(_measure(requested, loaded, rows, config, bar))
    return BacktestResult(window, config, tuple(results))


@dataclass(frozen=True)
class _Rows:
    """The scored rows: features, day numbers, cards, labels, and the SHAP sample."""

    features: F32
    days: I64
    card: I64
    fraud: npt.NDArray[np.int8]
    all_days: I64
    sample: I64


def _measure(
    requested: str,
    loaded: LoadedModel,
    rows: _Rows,
    config: BacktestConfig,
    bar: tqdm,  # type: ignore[type-arg]
) -> ModelResult:
    x, days, card, fraud, all_days = rows.features, rows.days, rows.card, rows.fraud, rows.all_days
    sample = rows.sample
    model = ServingModel.from_loaded(loaded)
    scores = model.predict(x)
    try:
        metrics = evaluate_scores(days, card, fraud, scores, config.k)
    except FraudError as exc:
        raise BacktestError(f"cannot measure {requested!r} on these days: {exc}") from exc
    actions = config.policy.decide(scores)
    bar.update()
    bar.set_description(f"explaining {requested}")
    shap: dict[str, float] = {}
    if len(sample):
        contributions = model.contributions(x[sample])
        means = np.abs(contributions.astype(np.float64)).mean(axis=0)
        shap = {name: float(value) for name, value in zip(model.features, means, strict=True)}
    bar.update()
    return ModelResult(
        requested=requested,
        version=loaded.version,
        metrics=metrics,
        daily_card_precision=daily_card_precision(days, card, fraud, scores, config.k),
        daily_alerts=daily_counts(days, actions != 0, all_days),
        daily_declines=daily_counts(days, actions == 2, all_days),
        alerts=at_threshold(fraud, scores, config.policy.review_threshold),
        declines=at_threshold(fraud, scores, config.policy.decline_threshold),
        curves=curves(fraud, scores),
        histogram=score_histogram(fraud, scores),
        mean_abs_shap=shap,
        shap_rows=len(sample),
    )


def _sample(rows: int, size: int, seed: int) -> I64:
    """Sorted row indices of the SHAP sample (every row when there are fewer)."""
    if size >= rows:
        return np.arange(rows, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(rows, size=size, replace=False)
    return np.sort(chosen).astype(np.int64)


def _date(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day_number)


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days
