"""Judge the challenger against the champion on the same holdout rows.

Both models score the served feature vectors of the holdout, so the
comparison is what each would have done on the traffic that actually came.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import xgboost as xgb

from pipeline.model.metrics import evaluate_scores
from pipeline.model.training import predict
from pipeline.registry import FeatureMismatchError, ModelNotFoundError, ModelRegistry
from pipeline.trainer.dataset import TrainingSet

log = logging.getLogger(__name__)

#: Cards an investigator can check per day, for card precision@k.
CARD_PRECISION_K = 100


@dataclass(frozen=True)
class Comparison:
    """Holdout metrics of the challenger and, when one could be scored, the champion."""

    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    champion_note: str = ""

    def delta(self, metric: str = "average_precision") -> float | None:
        """Challenger minus champion on ``metric`` (``None`` without a champion)."""
        if self.champion is None:
            return None
        return self.challenger[metric] - self.champion[metric]


def holdout_metrics(booster: xgb.Booster, holdout: TrainingSet) -> dict[str, float]:
    """AUC ROC, average precision and card precision@100 of ``booster`` on ``holdout``."""
    scores = predict(booster, holdout.features)
    return evaluate_scores(
        holdout.days, holdout.card_id, holdout.is_fraud, scores, k=CARD_PRECISION_K
    )


def compare(challenger: xgb.Booster, registry: ModelRegistry, holdout: TrainingSet) -> Comparison:
    """Score the challenger and the registry's champion on ``holdout``.

    A champion that reads other features than the served ones cannot be
    scored on them; the comparison then says why and carries no champion
    metrics.
    """
    mine = holdout_metrics(challenger, holdout)
    try:
        champion = registry.load("champion", expected_features=holdout.feature_names)
    except ModelNotFoundError:
        return Comparison(mine, None, None, "no champion registered")
    except FeatureMismatchError as exc:
        label = registry.get("champion").label
        log.warning("champion %s not comparable on served features: %s", label, exc)
        return Comparison(mine, None, label, f"champion reads other features: {exc}")
    theirs = holdout_metrics(champion.booster, holdout)
    return Comparison(mine, theirs, champion.version.label)
