"""Assemble a training set from served feature vectors and the labels mature at a cut-off.

Decisions carry the exact feature vector the scorer served, so training on
them has no train/serve skew. Labels are joined by ``transaction_id``; only
labels known at the cut-off count (``label_timestamp <= cutoff``), and only
whole days whose transactions are all past the label delay, so a rerun with
the same cut-off sees the same data and recent days are not biased towards
quickly reported frauds. Collectors keep compact columns while records stream
in; :func:`assemble` is a pure function over them.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION
from pipeline.features.spec import DAY_MS
from pipeline.trainer.errors import FeatureSetMismatchError

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


@dataclass(frozen=True)
class DecisionTable:
    """Decisions in the event-time range, with their served feature vectors."""

    transaction_id: I64
    card_id: I64
    timestamp_ms: I64
    features: F32


@dataclass(frozen=True)
class LabelTable:
    """Labels, as many per transaction as were published."""

    transaction_id: I64
    is_fraud: I8
    label_timestamp_ms: I64


@dataclass
class DecisionCollector:
    """Keeps the decisions with ``start <= timestamp < end`` and the current feature set.

    Decisions served with another feature set (or none) cannot be trained on
    with today's feature names; they are counted in ``stale`` and skipped.
    """

    start_ms: int | None = None
    end_ms: int | None = None
    feature_set_version: str = FEATURE_SET_VERSION
    width: int = len(FEATURE_NAMES)
    seen: int = 0
    out_of_range: int = 0
    stale: int = 0
    _tx: array[int] = field(default_factory=lambda: array("q"))
    _card: array[int] = field(default_factory=lambda: array("q"))
    _ts: array[int] = field(default_factory=lambda: array("q"))
    _features: array[float] = field(default_factory=lambda: array("f"))

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one decoded Decision record."""
        self.seen += 1
        ts = int(record["timestamp"])
        if (self.start_ms is not None and ts < self.start_ms) or (
            self.end_ms is not None and ts >= self.end_ms
        ):
            self.out_of_range += 1
            return
        vector = record.get("features") or ()
        if record.get("feature_set_version") != self.feature_set_version or (
            len(vector) != self.width
        ):
            self.stale += 1
            return
        self._tx.append(int(record["transaction_id"]))
        self._card.append(int(record["card_id"]))
        self._ts.append(ts)
        self._features.extend(vector)

    def __len__(self) -> int:
        return len(self._tx)

    def table(self) -> DecisionTable:
        """The kept decisions as arrays."""
        return DecisionTable(
            transaction_id=np.frombuffer(self._tx, dtype=np.int64).copy(),
            card_id=np.frombuffer(self._card, dtype=np.int64).copy(),
            timestamp_ms=np.frombuffer(self._ts, dtype=np.int64).copy(),
            features=np.frombuffer(self._features, dtype=np.float32).reshape(-1, self.width).copy(),
        )


@dataclass
class LabelCollector:
    """Keeps labels known by the cut-off that may belong to decisions in range.

    A label follows its transaction, so one older than the range start cannot
    belong to a decision in range and is not kept.
    """

    cutoff_ms: int
    start_ms: int | None = None
    seen: int = 0
    _tx: array[int] = field(default_factory=lambda: array("q"))
    _fraud: array[int] = field(default_factory=lambda: array("b"))
    _ts: array[int] = field(default_factory=lambda: array("q"))

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one decoded Label record."""
        self.seen += 1
        known = int(record["label_timestamp"])
        if known > self.cutoff_ms or (self.start_ms is not None and known < self.start_ms):
            return
        self._tx.append(int(record["transaction_id"]))
        self._fraud.append(1 if record["is_fraud"] else 0)
        self._ts.append(known)

    def __len__(self) -> int:
        return len(self._tx)

    def table(self) -> LabelTable:
        """The kept labels as arrays."""
        return LabelTable(
            transaction_id=np.frombuffer(self._tx, dtype=np.int64).copy(),
            is_fraud=np.frombuffer(self._fraud, dtype=np.int8).copy(),
            label_timestamp_ms=np.frombuffer(self._ts, dtype=np.int64).copy(),
        )


@dataclass(frozen=True)
class AssemblyCounts:
    """Where the decisions went: kept, or why not."""

    decisions: int
    duplicates: int
    immature: int
    unlabelled: int
    labelled: int
    frauds: int

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrainingSet:
    """Mature labelled decisions in time order: served features and ground truth."""

    transaction_id: I64
    card_id: I64
    timestamp_ms: I64
    features: F32
    is_fraud: I8
    counts: AssemblyCounts
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __len__(self) -> int:
        return len(self.transaction_id)

    @property
    def days(self) -> I64:
        """Calendar day (days since 1970-01-01 UTC) of each row."""
        days: I64 = self.timestamp_ms // DAY_MS
        return days

    def select(self, mask: npt.NDArray[np.bool_]) -> TrainingSet:
        """The rows where ``mask`` holds (counts stay those of the whole set)."""
        return TrainingSet(
            transaction_id=self.transaction_id[mask],
            card_id=self.card_id[mask],
            timestamp_ms=self.timestamp_ms[mask],
            features=self.features[mask],
            is_fraud=self.is_fraud[mask],
            counts=self.counts,
            feature_names=self.feature_names,
        )


def mature_before_ms(cutoff_ms: int, label_delay_ms: int) -> int:
    """Start of the first day not yet wholly past the label delay at ``cutoff_ms``."""
    return ((cutoff_ms - label_delay_ms) // DAY_MS) * DAY_MS


def assemble(
    decisions: DecisionTable,
    labels: LabelTable,
    *,
    cutoff_ms: int,
    label_delay_ms: int,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
) -> TrainingSet:
    """Join decisions to the labels known at ``cutoff_ms``, keeping whole mature days.

    A transaction decided twice (a scorer retried a batch) keeps its last
    decision; one labelled twice (analyst, then chargeback) keeps the latest
    label known at the cut-off. Raises :class:`FeatureSetMismatchError` when
    the feature matrix does not have one column per name.
    """
    if decisions.features.ndim != 2 or decisions.features.shape[1] != len(feature_names):
        raise FeatureSetMismatchError(
            f"served feature vectors have {decisions.features.shape[-1]} values, "
            f"the feature set names {len(feature_names)}"
        )
    total = len(decisions.transaction_id)
    last = _last_occurrence(decisions.transaction_id)
    duplicates = total - len(last)

    known = labels.label_timestamp_ms <= cutoff_ms
    label_tx = labels.transaction_id[known]
    order = np.lexsort((labels.label_timestamp_ms[known], label_tx))
    latest = _last_occurrence(label_tx[order])
    label_tx = label_tx[order][latest]
    label_fraud = labels.is_fraud[known][order][latest]

    mature = decisions.timestamp_ms[last] < mature_before_ms(cutoff_ms, label_delay_ms)
    rows = last[mature]
    found = np.isin(decisions.transaction_id[rows], label_tx)
    kept = rows[found]
    kept = kept[np.argsort(decisions.timestamp_ms[kept], kind="stable")]
    tx = decisions.transaction_id[kept]
    fraud = label_fraud[np.searchsorted(label_tx, tx)].astype(np.int8)
    counts = AssemblyCounts(
        decisions=total,
        duplicates=duplicates,
        immature=int((~mature).sum()),
        unlabelled=int((~found).sum()),
        labelled=len(kept),
        frauds=int(fraud.sum()),
    )
    return TrainingSet(
        transaction_id=tx,
        card_id=decisions.card_id[kept],
        timestamp_ms=decisions.timestamp_ms[kept],
        features=decisions.features[kept],
        is_fraud=fraud,
        counts=counts,
        feature_names=tuple(feature_names),
    )


def _last_occurrence(values: I64) -> I64:
    """Indices of the last occurrence of each distinct value, in ascending value order."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    reversed_values = values[::-1]
    _, first_in_reversed = np.unique(reversed_values, return_index=True)
    indices: I64 = (len(values) - 1 - first_in_reversed).astype(np.int64)
    return indices
