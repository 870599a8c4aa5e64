"""Terminal features: delayed, label-based aggregates per terminal.

Labels arrive ``label_delay`` after a transaction, so a terminal's windows end
``label_delay`` before the moment they are evaluated: they only ever contain
transactions whose labels are known by then. One function,
:meth:`TerminalHistory.primitives`, answers "aggregates of terminal X as of
time T" for any batch of (X, T): the offline evaluator asks it at every
transaction's time; the nearline job asks it for every terminal at its
publication time (:func:`terminal_aggregates_as_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features.errors import FeatureError
from pipeline.features.spec import (
    DEFAULT_LABEL_DELAY_MS,
    TERMINAL_FRAUD_LOOKBACK_MS,
    TERMINAL_WINDOWS_MS,
)
from pipeline.hashindex import Int64Index
from pipeline.jit import kernel, prefetch

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Queries ahead whose memory the lookup kernel asks for early, and how many of
#: a terminal's newest rows it asks for.
_AHEAD = 6
_AHEAD_ROWS = 48


@dataclass(frozen=True)
class TerminalPrimitives:
    """Per query: transaction and known-fraud counts per window, last fraud age."""

    count: dict[int, I64]
    frauds: dict[int, I64]
    known_fraud_age_ms: F64  # NaN when no known fraud within the lookback


class TerminalHistory:
    """Transactions per terminal with their (eventually known) fraud flags."""

    def __init__(self, terminal_id: I64, ts_ms: I64, is_fraud: npt.ArrayLike) -> None:
        terminal_id = np.asarray(terminal_id, dtype=np.int64)
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        is_fraud = (np.asarray(is_fraud) > 0).astype(np.int64)  # flags: 1 = known fraud
        if not _is_sorted(terminal_id, ts_ms):
            order = np.lexsort((ts_ms, terminal_id))
            terminal_id, ts_ms, is_fraud = terminal_id[order], ts_ms[order], is_fraud[order]
        self.terminal_id, self.ts_ms, self.is_fraud = terminal_id, ts_ms, is_fraud
        new = (
            np.r_[True, terminal_id[1:] != terminal_id[:-1]]
            if len(terminal_id)
            else np.zeros(0, bool)
        )
        terminals = terminal_id[new]
        self._rows = Int64Index(len(terminals))  # terminal id -> its position
        self._rows.put_many(terminals, np.arange(len(terminals), dtype=np.int64))
        self._starts = np.append(np.flatnonzero(new), len(terminal_id)).astype(np.int64)
        self._fraud_cum = np.concatenate(([0], np.cumsum(self.is_fraud))).astype(np.int64)
        self._fraud_rows = np.flatnonzero(self.is_fraud > 0).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ts_ms)

    def primitives(
        self,
        terminal_id: I64,
        as_of_ms: I64,
        label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
        windows: tuple[int, ...] = TERMINAL_WINDOWS_MS,
    ) -> TerminalPrimitives:
        """Aggregates of each queried terminal over windows ending ``label_delay`` before ``as_of``.

        A window ``w`` covers transactions with ``end - w < t <= end`` where
        ``end = as_of - label_delay`` (at least 1 ms before ``as_of``, so a
        zero delay never sees the transaction being scored).
        """
        if label_delay_ms < 0:
            raise FeatureError(f"label delay must be >= 0, got {label_delay_ms} ms")
        terminal_id = np.ascontiguousarray(terminal_id, dtype=np.int64)
        as_of = np.ascontiguousarray(as_of_ms, dtype=np.int64)
        n = len(terminal_id)
        counts = np.zeros((len(windows), n), np.int64)
        frauds = np.zeros((len(windows), n), np.int64)
        age = np.full(n, np.nan)
        if n and len(self):
            _terminal_windows(
                self._rows.get_many(terminal_id), self._starts, self.ts_ms, self._fraud_cum,
                self._fraud_rows, as_of, max(label_delay_ms, 1), np.asarray(windows, np.int64),
                TERMINAL_FRAUD_LOOKBACK_MS, counts, frauds, age,
            )  # fmt: skip
        return TerminalPrimitives(
            {w: counts[k] for k, w in enumerate(windows)},
            {w: frauds[k] for k, w in enumerate(windows)},
            age,
        )


def warm_up() -> None:
    """Compile (or load from numba's cache) the lookup kernel, so no batch pays for it."""
    history = TerminalHistory(np.array([1, 1]), np.array([0, 1]), np.array([0, 1]))
    history.primitives(np.array([1, 2]), np.array([10**10, 10**10]))


@kernel
def _rows_up_to(ts: I64, lo: int, hi: int, x: int) -> int:  # pragma: no cover - compiled
    """The end of the rows of ``ts[lo:hi]`` (ascending) at or before ``x``.

    Searched back from ``hi``, in steps doubling from 1, then by bisection: the
    answer is usually among a terminal's last rows (its recent days), which this
    reaches through a few neighbouring cache lines rather than a bisection's far ones.
    """
    if hi == lo or ts[hi - 1] <= x:
        return hi
    right = hi - 1  # ts[right] > x throughout
    step = 1
    left = right - step
    while left > lo and ts[left] > x:
        right = left
        step *= 2
        left = right - step
    if left < lo:
        left = lo
    while left < right:
        mid = (left + right) // 2
        if ts[mid] <= x:
            left = mid + 1
        else:
            right = mid
    return left


@kernel
def _terminal_windows(  # pragma: no cover - compiled
    rows: I64,
    starts: I64,
    ts: I64,
    fraud_cum: I64,
    fraud_rows: I64,
    as_of: I64,
    delay: int,
    windows: I64,
    lookback: int,
    counts: I64,
    frauds: I64,
    age: F64,
) -> None:
    """:meth:`TerminalHistory.primitives` for every query, in place.

    Rows are sorted by (terminal, time); ``starts[r] .. starts[r + 1]`` are the rows
    of the terminal at position ``r`` (``rows[i]``, -1 for an unknown terminal). Per
    query: the end of the rows before the window end, each window's start (searched
    below the previous, shorter window's start), and the last fraud before the end.
    """
    n = len(rows)
    for i in range(n):
        # The queries a few ahead: their terminal's bounds (further ahead), then
        # the lines of its last weeks of rows, where the windows usually end.
        if i + 2 * _AHEAD < n and rows[i + 2 * _AHEAD] >= 0:
            prefetch(starts, rows[i + 2 * _AHEAD] + 1)
        if i + _AHEAD < n and rows[i + _AHEAD] >= 0:
            soon = rows[i + _AHEAD]
            first, last = starts[soon], starts[soon + 1] - 1
            for back in range(0, _AHEAD_ROWS, 8):
                if last - back < first:
                    break
                prefetch(ts, last - back)
                prefetch(fraud_cum, last - back)
        r = rows[i]
        if r < 0:
            continue
        lo, hi = starts[r], starts[r + 1]
        end = as_of[i] - delay
        upper = _rows_up_to(ts, lo, hi, end)
        bound = upper
        for k in range(len(windows)):
            if k and windows[k] < windows[k - 1]:
                bound = upper  # not ascending: search the whole range again
            lower = _rows_up_to(ts, lo, bound, end - windows[k])
            counts[k, i] = upper - lower
            frauds[k, i] = fraud_cum[upper] - fraud_cum[lower]
            bound = lower
        if fraud_cum[upper] > fraud_cum[lo]:  # a fraud among the terminal's rows up to end
            row = fraud_rows[fraud_cum[upper] - 1]
            if ts[row] > end - lookback:
                age[i] = float(as_of[i] - ts[row])


def terminal_aggregates_as_of(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: pd.Timestamp,
    label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
) -> pd.DataFrame:
    """Terminal feature values of every terminal as of ``as_of``, for the nearline job.

    ``transactions`` needs ``transaction_id, timestamp, terminal_id``; ``labels``
    needs ``transaction_id, is_fraud`` and optionally ``label_time`` (default:
    timestamp + delay). Only labels known by ``as_of`` count as fraud. Returns one
    row per terminal (index ``terminal_id``) with the terminal feature columns.
    """
    from pipeline.features.derive import terminal_feature_frame

    as_of_ms = int(pd.Timestamp(as_of).value // 1_000_000)
    tx_ms = transactions["timestamp"].to_numpy("datetime64[ms]").astype(np.int64)
    seen = tx_ms <= as_of_ms
    tx_ids = transactions["transaction_id"].to_numpy()[seen]
    tx_ms = tx_ms[seen]
    terminal = transactions["terminal_id"].to_numpy(np.int64)[seen]
    fraud = np.zeros(len(tx_ids), np.int64)
    if len(labels):
        if "label_time" in labels.columns:
            label_ms = labels["label_time"].to_numpy("datetime64[ms]").astype(np.int64)
            usable = labels[label_ms <= as_of_ms]
        else:
            usable = labels
        fraud_ids = usable.loc[usable["is_fraud"].astype(bool), "transaction_id"].to_numpy()
        fraud = np.isin(tx_ids, fraud_ids).astype(np.int64)
        if "label_time" not in labels.columns:
            fraud &= (tx_ms + label_delay_ms <= as_of_ms).astype(np.int64)
    history = TerminalHistory(terminal, tx_ms, fraud)
    terminals = np.unique(terminal)
    prims = history.primitives(terminals, np.full(len(terminals), as_of_ms), label_delay_ms)
    frame = terminal_feature_frame(prims)
    frame.index = pd.Index(terminals, name="terminal_id")
    return frame


def _is_sorted(terminal_id: I64, ts_ms: I64) -> bool:
    """Whether rows are already ordered by (terminal, timestamp)."""
    if len(terminal_id) < 2:
        return True
    dt = np.diff(terminal_id)
    return bool(np.all((dt > 0) | ((dt == 0) & (np.diff(ts_ms) >= 0))))
