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


class PendingDecisions:
    """Decisions of one partition waiting for their label."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self._table: dict[int, tuple[int, int, float, int, str, str, int]] = {}
        self._expiry: deque[tuple[int, list[int]]] = deque()
        self.expired = 0

    def __len__(self) -> int:
        return len(self._table)

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
        if len(transaction_id) == 0:
            return
        ids = transaction_id.tolist()
        self._table.update(
            zip(
                ids,
                zip(
                    card_id.tolist(),
                    ts_ms.tolist(),
                    scores.tolist(),
                    actions.tolist(),
                    [model_name] * len(ids),
                    [model_version] * len(ids),
                    [decided_at] * len(ids),
                    strict=True,
                ),
                strict=True,
            )
        )
        self._expiry.append((int(ts_ms.max()), ids))

    def add_one(self, decision: dict[str, Any]) -> None:
        """Add one decoded Decision record (used when rebuilding after a restart)."""
        transaction_id = int(decision["transaction_id"])
        self._table[transaction_id] = (
            int(decision["card_id"]),
            int(decision["timestamp"]),
            float(decision["score"]),
            ACTIONS.index(str(decision["action"])),
            str(decision["model_name"]),
            str(decision["model_version"]),
            int(decision["decided_at"]),
        )
        self._expiry.append((int(decision["timestamp"]), [transaction_id]))

    def expire(self, watermark_ms: int) -> int:
        """Forget decisions older than the retention behind ``watermark_ms``."""
        dropped = 0
        while self._expiry and self._expiry[0][0] < watermark_ms - self.retention_ms:
            _, ids = self._expiry.popleft()
            for transaction_id in ids:
                if self._table.pop(transaction_id, None) is not None:
                    dropped += 1
        self.expired += dropped
        return dropped

    def take(self, transaction_id: int) -> PendingDecision | None:
        entry = self._table.pop(transaction_id, None)
        return PendingDecision(*entry) if entry is not None else None


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
