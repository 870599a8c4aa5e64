"""Score a feature matrix, decide, and explain the flagged rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pipeline.policy import DecisionPolicy
from pipeline.scoring.model import ServingModel
from pipeline.scoring.reasons import Reason, top_reasons

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScoredBatch:
    """Scores and actions for every row; reasons for the flagged ones only."""

    scores: F64
    actions: npt.NDArray[np.int8]
    flagged: npt.NDArray[np.intp]
    reasons: dict[int, list[Reason]] = field(default_factory=dict)


class ScoringEngine:
    """One model and one policy applied to whole batches.

    Explanations (TreeSHAP) cost far more than a prediction, so only flagged
    rows pay for them.
    """

    def __init__(
        self,
        model: ServingModel,
        policy: DecisionPolicy,
        describe: Callable[[str], str],
        max_reasons: int = 3,
    ) -> None:
        self.model = model
        self.policy = policy
        self.describe = describe
        self.max_reasons = max_reasons

    def with_model(self, model: ServingModel) -> ScoringEngine:
        """The same policy around another model (a live swap)."""
        return ScoringEngine(model, self.policy, self.describe, self.max_reasons)

    def score(self, matrix: F32) -> ScoredBatch:
        scores = self.model.predict(matrix)
        actions = self.policy.decide(scores)
        flagged = self.policy.flagged(actions)
        reasons: dict[int, list[Reason]] = {}
        if len(flagged):
            rows = matrix[flagged]
            explained = top_reasons(
                self.model.contributions(rows),
                rows,
                self.model.features,
                self.describe,
                self.max_reasons,
            )
            reasons = dict(zip(flagged.tolist(), explained, strict=True))
        return ScoredBatch(scores, actions, flagged, reasons)
