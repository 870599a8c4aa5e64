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
    decided_at: int
    ids: list[int]


_ROW_BITS = 24  # rows per segment (one batch) stay far below 2**24
_ROW_MASK = (1 << _ROW_BITS) - 1


class PendingDecisions:
    """Decisions of one partition waiting for their label.

    Batches are kept as columns; a dict maps each transaction id to its batch
    and row, the only per-decision work on the hot path.
    """

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        # transaction id -> segment number << _ROW_BITS | row: plain ints, which
        # the garbage collector never scans (tuples here made full collections slow).
        self._index: dict[int, int] = {}
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
        decided_at: int,
    ) -> None:
        n = len(transaction_id)
        if n == 0:
            return
        number = self._next_segment
        self._next_segment += 1
        ids = transaction_id.tolist()
        self._segments[number] = _Segment(
            card_id, ts_ms, scores, actions, model_name, model_version, decided_at, ids
        )
        base = number << _ROW_BITS
        self._index.update(zip(ids, range(base, base + n), strict=True))
        self._expiry.append((int(ts_ms.max()), number))

    def add_one(self, decision: dict[str, Any]) -> None:
        """Add one decoded Decision record (used when rebuilding after a restart)."""
        self.add(
            np.array([int(decision["transaction_id"])], np.int64),
            np.array([int(decision["card_id"])], np.int64),
            np.array([int(decision["timestamp"])], np.int64),
            np.array([float(decision["score"])]),
            np.array([ACTIONS.index(str(decision["action"]))], np.int8),
            str(decision["model_name"]),
            str(decision["model_version"]),
            int(decision["decided_at"]),
        )

    def expire(self, watermark_ms: int) -> int:
        """Forget decisions older than the retention behind ``watermark_ms``."""
        dropped = 0
        while self._expiry and self._expiry[0][0] < watermark_ms - self.retention_ms:
            _, number = self._expiry.popleft()
            segment = self._segments.pop(number)
            base = number << _ROW_BITS
            for row, transaction_id in enumerate(segment.ids):
                if self._index.get(transaction_id) == base + row:
                    del self._index[transaction_id]
                    dropped += 1
        self.expired += dropped
        return dropped

    def take(self, transaction_id: int) -> PendingDecision | None:
        where = self._index.pop(transaction_id, None)
        if where is None:
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
            segment.decided_at,
        )


def outcome_record(
    transaction_id: int, decision: PendingDecision, label: dict[str, Any]
) -> dict[str, Any]:
    """The Outcome for a decision and its label."""
    return {
        "transaction_id": transaction_id,
        "card_id": decision.card_id,
        "timestamp": decision.timestamp,
        "score": decision.score,
        "action": ACTIONS[decision.action],
        "model_name": decision.model_name,
        "model_version": decision.model_version,
        "rollout_arm": "champion",
        "challenger_version": None,
        "challenger_score": None,
        "is_fraud": bool(label["is_fraud"]),
        "decided_at": decision.decided_at,
        "label_timestamp": int(label["label_timestamp"]),
    }
