from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.policy import APPROVE, DECLINE, REVIEW, DecisionPolicy


def test_thresholds_are_inclusive() -> None:
    policy = DecisionPolicy(review_threshold=0.5, decline_threshold=0.9)
    actions = policy.decide([0.0, 0.49, 0.5, 0.89, 0.9, 1.0])
    assert actions.tolist() == [APPROVE, APPROVE, REVIEW, REVIEW, DECLINE, DECLINE]
    assert policy.flagged(actions).tolist() == [2, 3, 4, 5]


def test_equal_thresholds_never_review() -> None:
    policy = DecisionPolicy(review_threshold=0.7, decline_threshold=0.7)
    assert policy.decide([0.69, 0.7]).tolist() == [APPROVE, DECLINE]


@pytest.mark.parametrize(("review", "decline"), [(0.9, 0.5), (-0.1, 0.5), (0.5, 1.5)])
def test_inconsistent_thresholds_are_refused(review: float, decline: float) -> None:
    with pytest.raises(ConfigError):
        DecisionPolicy(review_threshold=review, decline_threshold=decline)


def test_empty_batch() -> None:
    assert DecisionPolicy().decide(np.array([])).shape == (0,)
