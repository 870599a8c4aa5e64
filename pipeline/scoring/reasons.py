"""Reason codes: the features that pushed a score up the most, in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Reason(NamedTuple):
    """One reason code of a decision."""

    feature: str
    contribution: float
    text: str


def top_reasons(
    contributions: npt.NDArray[np.floating],
    values: npt.NDArray[np.floating],
    features: Sequence[str],
    describe: Callable[[str], str],
    k: int = 3,
) -> list[list[Reason]]:
    """Per row, up to ``k`` features with the largest positive contribution.

    Only features that raised the fraud score are reasons; a row whose score
    was not raised by any feature gets an empty list.
    """
    if len(contributions) == 0:
        return []
    k = min(k, contributions.shape[1])
    top = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    texts = [describe(name) for name in features]
    result: list[list[Reason]] = []
    for row, columns in enumerate(top.tolist()):
        reasons = []
        for column in columns:
            contribution = float(contributions[row, column])
            if contribution <= 0.0:
                break
            value = float(values[row, column])
            shown = "no history yet" if value != value else f"value {value:.4g}"
            reasons.append(Reason(features[column], contribution, f"{texts[column]} ({shown})"))
        result.append(reasons)
    return result
