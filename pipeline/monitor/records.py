"""Typed, validated views of the decoded records the monitor consumes.

The serde checks the Avro shape; these functions check what the monitor relies
on (finite values, consistent lengths, a decision behind each outcome) and
raise :class:`InvalidRecord` with a reason code otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.monitor.errors import INVALID_VALUE, MALFORMED, UNKNOWN_TRANSACTION, InvalidRecord

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WindowStats:
    """One worker's (or, merged, every worker's) summary of one event-time window."""

    model_name: str
    model_version: str
    rollout_arm: str
    window_start: int
    window_end: int
    count: int
    approved: int
    reviewed: int
    declined: int
    alerts: int
    dead_letters: int
    score_histogram: I64
    feature_names: tuple[str, ...]
    feature_mean: F64
    feature_std: F64
    latency_ms_mean: float
    latency_ms_max: float
    workers: frozenset[str]

    @property
    def key(self) -> tuple[str, str, str]:
        """What a detector follows: one model version in one rollout arm."""
        return (self.model_name, self.model_version, self.rollout_arm)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision joined to its label."""

    transaction_id: int
    card_id: int
    timestamp: int
    score: float
    alerted: bool
    is_fraud: bool
    model_name: str
    model_version: str
    rollout_arm: str
    label_timestamp: int


def window_stats(record: Mapping[str, Any]) -> WindowStats:
    """A decoded MonitorStats record as :class:`WindowStats`; :class:`InvalidRecord` if unusable."""
    try:
        names = tuple(str(n) for n in record["feature_names"])
        mean = np.asarray(record["feature_mean"], dtype=np.float64)
        std = np.asarray(record["feature_std"], dtype=np.float64)
        histogram = np.asarray(record["score_histogram"], dtype=np.int64)
        stats = WindowStats(
            model_name=str(record["model_name"]),
            model_version=str(record["model_version"]),
            rollout_arm=str(record.get("rollout_arm", "champion")),
            window_start=int(record["window_start"]),
            window_end=int(record["window_end"]),
            count=int(record["count"]),
            approved=int(record.get("approved", 0)),
            reviewed=int(record.get("reviewed", 0)),
            declined=int(record.get("declined", 0)),
            alerts=int(record.get("alerts", 0)),
            dead_letters=int(record.get("dead_letters", 0)),
            score_histogram=histogram,
            feature_names=names,
            feature_mean=mean,
            feature_std=std,
            latency_ms_mean=float(record.get("latency_ms_mean", 0.0)),
            latency_ms_max=float(record.get("latency_ms_max", 0.0)),
            workers=frozenset({str(record["worker_id"])}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(MALFORMED, f"MonitorStats: {type(exc).__name__}: {exc}") from None
    problem = _stats_problem(stats)
    if problem is not None:
        raise InvalidRecord(INVALID_VALUE, f"MonitorStats: {problem}")
    return stats


def _stats_problem(s: WindowStats) -> str | None:
    if not s.model_name or not s.model_version or not next(iter(s.workers)):
        return "model_name, model_version and worker_id must be set"
    if s.window_start < 0 or s.window_end <= s.window_start:
        return f"window [{s.window_start}, {s.window_end}) is empty or negative"
    if s.count < 0 or min(s.approved, s.reviewed, s.declined, s.alerts, s.dead_letters) < 0:
        return "negative counts"
    if s.approved + s.reviewed + s.declined > s.count:
        return "more actions than transactions"
    if (s.score_histogram < 0).any() or int(s.score_histogram.sum()) > s.count:
        return "score histogram has negative counts or more than count"
    if not (len(s.feature_names) == len(s.feature_mean) == len(s.feature_std)):
        return "feature_names, feature_mean and feature_std differ in length"
    if len(set(s.feature_names)) != len(s.feature_names):
        return "duplicate feature names"
    if np.isinf(s.feature_mean).any() or np.isinf(s.feature_std).any():
        return "infinite feature statistics (NaN marks a feature unknown in the window)"
    if (s.feature_std < 0).any():
        return "negative standard deviation"
    return None


def outcome(record: Mapping[str, Any]) -> Outcome:
    """A decoded Outcome record as :class:`Outcome`; :class:`InvalidRecord` if unusable.

    An outcome without a decision behind it (no model version, no decision
    time) is a label for a transaction the scorer never decided.
    """
    try:
        out = Outcome(
            transaction_id=int(record["transaction_id"]),
            card_id=int(record["card_id"]),
            timestamp=int(record["timestamp"]),
            score=float(record["score"]),
            alerted=str(record["action"]) != "APPROVE",
            is_fraud=bool(record["is_fraud"]),
            model_name=str(record["model_name"]),
            model_version=str(record["model_version"]),
            rollout_arm=str(record.get("rollout_arm", "champion")),
            label_timestamp=int(record["label_timestamp"]),
        )
        decided_at = int(record["decided_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(MALFORMED, f"Outcome: {type(exc).__name__}: {exc}") from None
    if not out.model_name:
        raise InvalidRecord(INVALID_VALUE, "Outcome: model_name is empty")
    if not out.model_version or decided_at <= 0:
        raise InvalidRecord(
            UNKNOWN_TRANSACTION,
            f"Outcome: label for transaction {out.transaction_id} without a decision",
        )
    if not math.isfinite(out.score) or not 0.0 <= out.score <= 1.0:
        raise InvalidRecord(INVALID_VALUE, f"Outcome: score {out.score} is not in [0, 1]")
    if out.timestamp <= 0 or out.label_timestamp < out.timestamp:
        raise InvalidRecord(INVALID_VALUE, "Outcome: label precedes its transaction")
    return out
