"""Join delayed labels to the decisions they belong to (per source partition).

Decisions wait in a compact table until their label arrives or they grow
older (in event time) than the label delay plus a margin. A label whose
decision is not in the table (unknown, already labelled, or expired) is
reported as such, never silently dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.hashindex import Int64Index
from pipeline.policy import ACTIONS

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PendingDecision:
    card_id: int
    timestamp: int
    score: float
    action: int
    model_name: str
    model_version: str
    decided_at: int


@dataclass(frozen=True)
class _Segment:
    """One batch of decisions, columnar."""

    card_id: I64
    ts_ms: I64
    scores: npt.NDArray[np.float64]
    actions: npt.NDArray[np.int8]
    model_name: str
    model_version: str
    decided_at: I64
    ids: I64


@dataclass(frozen=True)
class Taken:
    """What :meth:`PendingDecisions.take_many` found: ``found`` per asked id; the
    other columns hold the found decisions only, in the order they were asked."""

    found: npt.NDArray[np.bool_]
    card_id: I64
    ts_ms: I64
    scores: npt.NDArray[np.float64]
    actions: npt.NDArray[np.int8]
    decided_at: I64
    models: list[tuple[str, str]]
    """(name, version) pairs; ``model_index`` picks one per found decision."""
    model_index: I64


@dataclass(frozen=True)
class OutcomeBatch:
    """Outcomes as columns, ready for the Outcome encoder."""

    transaction_id: I64
    card_id: I64
    timestamp: I64
    score: npt.NDArray[np.float64]
    action: npt.NDArray[np.int8]
    models: list[tuple[str, str]]
    model_index: I64
    is_fraud: npt.NDArray[np.bool_]
    decided_at: I64
    label_timestamp: I64

    def __len__(self) -> int:
        return len(self.transaction_id)

    @staticmethod
    def join(
        taken: Taken, transaction_id: I64, is_fraud: npt.NDArray[np.bool_], label_ms: I64
    ) -> OutcomeBatch:
        """The outcomes of the labels whose decisions ``taken`` found (label columns
        given for every asked id)."""
        found = taken.found
        return OutcomeBatch(
            transaction_id[found],
            taken.card_id,
            taken.ts_ms,
            taken.scores,
            taken.actions,
            taken.models,
            taken.model_index,
            is_fraud[found],
            taken.decided_at,
            label_ms[found],
        )

    @staticmethod
    def concat(parts: list[OutcomeBatch]) -> OutcomeBatch:
        """One batch of several (their model lists merged)."""
        models: dict[tuple[str, str], int] = {}
        indices = []
        for part in parts:
            remap = np.array([models.setdefault(m, len(models)) for m in part.models], np.int64)
            indices.append(remap[part.model_index] if len(part) else part.model_index)

        def cat(name: str) -> Any:
            return np.concatenate([getattr(part, name) for part in parts])

        return OutcomeBatch(
            cat("transaction_id"),
            cat("card_id"),
            cat("timestamp"),
            cat("score"),
            cat("action"),
            list(models),
            np.concatenate(indices),
            cat("is_fraud"),
            cat("decided_at"),
            cat("label_timestamp"),
        )


_ROW_BITS = 24  # rows per segment (one batch) stay far below 2**24
_ROW_MASK = (1 << _ROW_BITS) - 1


class PendingDecisions:
    """Decisions of one partition waiting for their label.

    Batches are kept as columns; a compiled hash index maps each transaction id
    to its batch and row, one kernel call per batch on the hot path.
    """

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        # transaction id -> segment number << _ROW_BITS | row (never negative)
        self._index = Int64Index()
        self._segments: dict[int, _Segment] = {}
        self._expiry: deque[tuple[int, int]] = deque()  # (newest ts, segment number)
        self._next_segment = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._index)

    def add(
        self,
        transaction_id: I64,
        card_id: I64,
        ts_ms: I64,
        scores: npt.NDArray[np.float64],
        actions: npt.NDArray[np.int8],
        model_name: str,
        model_version: str,
        decided_at: int | I64,
    ) -> None:
        """One batch of decisions of one model (``decided_at``: one time or one per row)."""
        n = len(transaction_id)
        if n == 0:
            return
        number = self._next_segment
        self._next_segment += 1
        ids = np.ascontiguousarray(transaction_id, np.int64)
        self._segments[number] = _Segment(
            card_id,
            ts_ms,
            scores,
            actions,
            model_name,
            model_version,
            np.full(n, decided_at, np.int64)
            if np.ndim(decided_at) == 0
            else np.asarray(decided_at, np.int64),
            ids,
        )
        base = number << _ROW_BITS
        self._index.put_many(ids, np.arange(base, base + n, dtype=np.int64))
        self._expiry.append((int(ts_ms.max()), number))

    def add_records(self, decisions: list[dict[str, Any]]) -> None:
        """Add decoded Decision records (when rebuilding after a restart): one batch
        per model among them, so the table stays a few large batches."""
        models: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for decision in decisions:
            key = (str(decision["model_name"]), str(decision["model_version"]))
            models.setdefault(key, []).append(decision)
        codes = {name: code for code, name in enumerate(ACTIONS)}
        for (name, version), rows in models.items():

            def column(field: str, dtype: Any, rows: list[dict[str, Any]] = rows) -> Any:
                return np.fromiter((row[field] for row in rows), dtype, len(rows))

            self.add(
                column("transaction_id", np.int64),
                column("card_id", np.int64),
                column("timestamp", np.int64),
                column("score", np.float64),
                np.fromiter((codes[row["action"]] for row in rows), np.int8, len(rows)),
                name,
                version,
                column("decided_at", np.int64),
            )

    def expire(self, watermark_ms: int) -> int:
        """Forget decisions older than the retention behind ``watermark_ms``."""
        dropped = 0
        while self._expiry and self._expiry[0][0] < watermark_ms - self.retention_ms:
            _, number = self._expiry.popleft()
            segment = self._segments.pop(number)
            base = number << _ROW_BITS
            rows = np.arange(base, base + len(segment.ids), dtype=np.int64)
            dropped += self._index.delete_matching(segment.ids, rows)
        self.expired += dropped
        return dropped

    def expiry_threshold(self) -> int | None:
        """The watermark past which :meth:`expire` drops its next batch (None: nothing held)."""
        if not self._expiry:
            return None
        return self._expiry[0][0] + self.retention_ms

    def take_many(self, transaction_ids: list[int] | I64) -> Taken:
        """Take the decisions of many labels at once, in order (a repeated id finds
        its decision only the first time)."""
        where = self._index.pop_many(np.asarray(transaction_ids, np.int64))
        found = where >= 0
        hits = where[found]
        numbers, rows = hits >> _ROW_BITS, hits & _ROW_MASK
        n = len(hits)
        card_id, ts_ms = np.empty(n, np.int64), np.empty(n, np.int64)
        scores, actions = np.empty(n, np.float64), np.empty(n, np.int8)
        decided_at, model_index = np.empty(n, np.int64), np.empty(n, np.int64)
        models: dict[tuple[str, str], int] = {}
        for number in np.unique(numbers).tolist():
            mask = numbers == number
            segment = self._segments[number]
            at = rows[mask]
            card_id[mask] = segment.card_id[at]
            ts_ms[mask] = segment.ts_ms[at]
            scores[mask] = segment.scores[at]
            actions[mask] = segment.actions[at]
            decided_at[mask] = segment.decided_at[at]
            model = (segment.model_name, segment.model_version)
            model_index[mask] = models.setdefault(model, len(models))
        return Taken(found, card_id, ts_ms, scores, actions, decided_at, list(models), model_index)

    def take(self, transaction_id: int) -> PendingDecision | None:
        where = int(self._index.pop_many(np.array([transaction_id], np.int64))[0])
        if where < 0:
            return None
        segment = self._segments[where >> _ROW_BITS]
        row = where & _ROW_MASK
        return PendingDecision(
            int(segment.card_id[row]),
            int(segment.ts_ms[row]),
            float(segment.scores[row]),
            int(segment.actions[row]),
            segment.model_name,
            segment.model_version,
            int(segment.decided_at[row]),
        )
