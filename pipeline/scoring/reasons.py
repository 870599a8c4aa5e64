"""Reason codes: the features that pushed a score up the most, in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pipeline.model.explain import top_positive


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
    texts = [describe(name) for name in features]
    # Python floats of every cell at once (the same values float() gives one by
    # one): indexing numpy arrays cell by cell costs more than the rest here.
    value_rows, contribution_rows = values.tolist(), contributions.tolist()
    result: list[list[Reason]] = []
    for row, columns in enumerate(top_positive(contributions, k)):
        row_values, row_contributions = value_rows[row], contribution_rows[row]
        reasons = []
        for column in columns:
            value = row_values[column]
            shown = "no history yet" if value != value else f"value {value:.4g}"
            reasons.append(
                Reason(features[column], row_contributions[column], f"{texts[column]} ({shown})")
            )
        result.append(reasons)
    return result
