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

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


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
        is_fraud = np.asarray(is_fraud, dtype=np.int64)
        if not _is_sorted(terminal_id, ts_ms):
            order = np.lexsort((ts_ms, terminal_id))
            terminal_id, ts_ms, is_fraud = terminal_id[order], ts_ms[order], is_fraud[order]
        self.terminal_id, self.ts_ms, self.is_fraud = terminal_id, ts_ms, is_fraud
        new = (
            np.r_[True, terminal_id[1:] != terminal_id[:-1]]
            if len(terminal_id)
            else np.zeros(0, bool)
        )
        self._terminals = terminal_id[new]
        self._rank = np.cumsum(new) - 1
        self._fraud_cum = np.concatenate(([0], np.cumsum(self.is_fraud)))
        self._fraud_rows = np.flatnonzero(self.is_fraud > 0)
        # One sorted key, computed once: rank * span + (ts - t0); queries clip into [0, span).
        self._t0 = int(ts_ms.min()) if len(ts_ms) else 0
        self._span = (int(ts_ms.max()) - self._t0 + 2) if len(ts_ms) else 1
        self._key = self._rank * self._span + (ts_ms - self._t0)
        self._fraud_key = self._key[self._fraud_rows]

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
        terminal_id = np.asarray(terminal_id, dtype=np.int64)
        end = np.asarray(as_of_ms, dtype=np.int64) - max(label_delay_ms, 1)
        n = len(terminal_id)
        count = {w: np.zeros(n, np.int64) for w in windows}
        frauds = {w: np.zeros(n, np.int64) for w in windows}
        age = np.full(n, np.nan)
        if n == 0 or len(self) == 0:
            return TerminalPrimitives(count, frauds, age)
        rank = np.searchsorted(self._terminals, terminal_id)
        rank_clip = np.minimum(rank, len(self._terminals) - 1)
        known = self._terminals[rank_clip] == terminal_id
        span, t0 = self._span, self._t0
        q_rank = rank_clip[known].astype(np.int64)
        q_base = q_rank * span
        q_end_t = end[known]
        q_order = np.argsort(q_base + np.clip(q_end_t - t0, -1, span - 1), kind="stable")
        q_base, q_end_t = q_base[q_order], q_end_t[q_order]
        where = np.flatnonzero(known)[q_order]
        upper = np.searchsorted(
            self._key, q_base + np.clip(q_end_t - t0, -1, span - 1), side="right"
        )
        for w in windows:
            lower = np.searchsorted(
                self._key, q_base + np.clip(q_end_t - w - t0, -1, span - 1), side="right"
            )
            count[w][where] = upper - lower
            frauds[w][where] = self._fraud_cum[upper] - self._fraud_cum[lower]
        if len(self._fraud_rows):
            last = (
                np.searchsorted(
                    self._fraud_key, q_base + np.clip(q_end_t - t0, -1, span - 1), side="right"
                )
                - 1
            )
            ok = last >= 0
            row = self._fraud_rows[np.maximum(last, 0)]
            ok &= self._rank[row] == q_base // span
            fraud_ts = self.ts_ms[row]
            ok &= fraud_ts > q_end_t - TERMINAL_FRAUD_LOOKBACK_MS
            as_of_q = np.asarray(as_of_ms, dtype=np.int64)[where]
            age[where] = np.where(ok, (as_of_q - fraud_ts).astype(np.float64), np.nan)
        return TerminalPrimitives(count, frauds, age)


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
