"""Window primitives of a card's history, vectorized over many cards at once.

Both evaluators call :func:`grouped_card_primitives`: the offline one on a whole
data set, the online one on "retained state + new batch" per card. Rows must be
grouped by card (contiguous) and, within a card, in processing order with
non-decreasing timestamps. For each row it gives, per window ``w``, statistics
of the *earlier* rows of the same card with ``timestamp > t - w``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.features.spec import CARD_WINDOWS_MS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CardPrimitives:
    """Per-row statistics of earlier same-card rows, one array per window."""

    count: dict[int, I64]
    total: dict[int, F64]
    total_sq: dict[int, F64]
    max_amount: dict[int, F64]  # NaN where the window holds no earlier row
    gap_ms: F64  # NaN for a card's first row

    @classmethod
    def empty(cls, windows: Iterable[int]) -> CardPrimitives:
        """No rows, for every window."""
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(
            {w: empty_i for w in windows},
            {w: empty_f for w in windows},
            {w: empty_f for w in windows},
            {w: empty_f for w in windows},
            empty_f,
        )

    def take(self, index: I64) -> CardPrimitives:
        """The rows at ``index`` (e.g. a batch's rows, or back to input order)."""
        return CardPrimitives(
            count={w: v[index] for w, v in self.count.items()},
            total={w: v[index] for w, v in self.total.items()},
            total_sq={w: v[index] for w, v in self.total_sq.items()},
            max_amount={w: v[index] for w, v in self.max_amount.items()},
            gap_ms=self.gap_ms[index],
        )


def grouped_card_primitives(
    group: I64,
    ts_ms: I64,
    amount: F64,
    rows: I64 | None = None,
    windows: tuple[int, ...] = CARD_WINDOWS_MS,
) -> CardPrimitives:
    """Primitives for rows grouped by ``group`` (any int labels, contiguous).

    ``rows`` (default: all) selects the rows to compute, in the order returned;
    the others still serve as history.
    """
    n = len(ts_ms)
    query = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    m = len(query)
    if m == 0:
        return CardPrimitives.empty(windows)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(group[1:], group[:-1], out=new_group[1:])
    group_rank = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)[group_rank[query]]
    # One sorted key over all cards: rank * span + time, so a single searchsorted
    # finds each row's window start without leaving its card.
    t0 = int(ts_ms.min())
    span = int(ts_ms.max()) - t0 + max(windows) + 1
    key = group_rank.astype(np.int64) * span + (ts_ms - t0)
    cum = np.concatenate(([0.0], np.cumsum(amount)))
    cum_sq = np.concatenate(([0.0], np.cumsum(amount * amount)))
    count: dict[int, I64] = {}
    total: dict[int, F64] = {}
    total_sq: dict[int, F64] = {}
    max_amount: dict[int, F64] = {}
    for w in windows:
        lower = np.searchsorted(key, key[query] - w, side="right").astype(np.int64)
        lower = np.maximum(lower, group_start)
        count[w] = query - lower
        total[w] = cum[query] - cum[lower]
        total_sq[w] = cum_sq[query] - cum_sq[lower]
        max_amount[w] = _range_max(amount, lower, query)
    gap = np.full(m, np.nan)
    has_prev = query > group_start
    prev = query[has_prev]
    gap[has_prev] = (ts_ms[prev] - ts_ms[prev - 1]).astype(np.float64)
    return CardPrimitives(count, total, total_sq, max_amount, gap)


def _range_max(values: F64, lower: I64, upper: I64) -> F64:
    """max(values[lower:upper]) per row; NaN where the range is empty."""
    out = np.full(len(lower), np.nan)
    has = upper > lower
    if has.any():
        bounds = np.empty(2 * int(has.sum()), dtype=np.int64)
        bounds[0::2] = lower[has]
        bounds[1::2] = upper[has]
        # reduceat over [lo, hi) pairs; the odd slots are the gaps between pairs.
        padded = np.append(values, -np.inf)
        out[has] = np.maximum.reduceat(padded, bounds)[0::2]
    return out
