"""Score thresholds turned into actions, for a whole batch at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.errors import ConfigError

APPROVE, REVIEW, DECLINE = 0, 1, 2
ACTIONS: tuple[str, str, str] = ("APPROVE", "REVIEW", "DECLINE")


@dataclass(frozen=True)
class DecisionPolicy:
    """Two thresholds on the model's fraud probability.

    ``score >= decline_threshold`` declines, ``score >= review_threshold``
    sends the transaction to an analyst, anything lower is approved. Review and
    decline both raise an alert.
    """

    review_threshold: float = 0.5
    decline_threshold: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.review_threshold <= self.decline_threshold <= 1.0:
            raise ConfigError(
                "policy thresholds must satisfy 0 <= review <= decline <= 1, got "
                f"review={self.review_threshold} decline={self.decline_threshold}"
            )

    def decide(self, scores: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """Action codes (APPROVE, REVIEW, DECLINE) for a batch of scores."""
        values = np.asarray(scores, dtype=np.float64)
        actions = np.zeros(values.shape, dtype=np.int8)
        actions[values >= self.review_threshold] = REVIEW
        actions[values >= self.decline_threshold] = DECLINE
        return actions

    @staticmethod
    def flagged(actions: npt.NDArray[np.int8]) -> npt.NDArray[np.intp]:
        """Indices of the transactions that raise an alert."""
        return np.flatnonzero(actions != APPROVE)
