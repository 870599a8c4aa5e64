"""Training-set assembly: served features joined to labels mature at a cut-off."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION
from pipeline.features.spec import DAY_MS
from pipeline.trainer import (
    DecisionCollector,
    DecisionTable,
    FeatureSetMismatchError,
    LabelCollector,
    LabelTable,
    assemble,
)
from pipeline.trainer.dataset import mature_before_ms

WIDTH = len(FEATURE_NAMES)
DAY0 = 17_700 * DAY_MS
DELAY = 7 * DAY_MS


def decision(tx: int, ts: int, value: float = 0.0, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "transaction_id": tx,
        "card_id": 100 + tx % 3,
        "timestamp": ts,
        "feature_set_version": FEATURE_SET_VERSION,
        "features": [value] * WIDTH,
    }
    record.update(changes)
    return record


def label(tx: int, fraud: bool, known: int) -> dict[str, Any]:
    return {"transaction_id": tx, "card_id": 0, "is_fraud": fraud, "label_timestamp": known}


def table(rows: list[tuple[int, int, float]]) -> DecisionTable:
    tx, ts, value = (np.array(column) for column in zip(*rows, strict=True))
    return DecisionTable(
        transaction_id=tx.astype(np.int64),
        card_id=(100 + tx % 3).astype(np.int64),
        timestamp_ms=ts.astype(np.int64),
        features=np.repeat(value.astype(np.float32)[:, None], WIDTH, axis=1),
    )


def labels(rows: list[tuple[int, int, int]]) -> LabelTable:
    tx, fraud, known = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
    return LabelTable(tx, fraud.astype(np.int8), known)


def test_decision_collector_keeps_the_range_and_the_current_feature_set() -> None:
    collector = DecisionCollector(start_ms=DAY0, end_ms=DAY0 + DAY_MS)
    collector.add(decision(1, DAY0 - 1))  # before the range
    collector.add(decision(2, DAY0, 1.5))
    collector.add(decision(3, DAY0 + DAY_MS))  # end is exclusive
    collector.add(decision(4, DAY0 + 5, feature_set_version="1"))
    collector.add(decision(5, DAY0 + 6, features=[1.0, 2.0]))
    collector.add(decision(6, DAY0 + 7, feature_set_version="", features=[]))
    collector.add(decision(7, DAY0 + 8, 2.5))
    got = collector.table()
    assert (collector.seen, collector.out_of_range, collector.stale, len(collector)) == (7, 2, 3, 2)
    assert got.transaction_id.tolist() == [2, 7]
    assert got.features.shape == (2, WIDTH)
    assert got.features.dtype == np.float32
    assert got.features[:, 0].tolist() == [1.5, 2.5]
    assert got.timestamp_ms.tolist() == [DAY0, DAY0 + 8]


def test_label_collector_keeps_labels_known_at_the_cutoff_after_the_start() -> None:
    collector = LabelCollector(cutoff_ms=DAY0 + 10 * DAY_MS, start_ms=DAY0)
    collector.add(label(1, True, DAY0 - 1))  # older than any decision in range
    collector.add(label(2, True, DAY0 + 10 * DAY_MS))  # known exactly at the cut-off
    collector.add(label(3, False, DAY0 + 10 * DAY_MS + 1))  # not known yet
    collector.add(label(4, False, DAY0 + 3))
    got = collector.table()
    assert got.transaction_id.tolist() == [2, 4]
    assert got.is_fraud.tolist() == [1, 0]


def test_mature_days_are_whole_days_past_the_label_delay() -> None:
    cutoff = DAY0 + 10 * DAY_MS + 5 * 3_600_000
    assert mature_before_ms(cutoff, DELAY) == DAY0 + 3 * DAY_MS
    assert mature_before_ms(DAY0 + 10 * DAY_MS, DELAY) == DAY0 + 3 * DAY_MS


def test_assemble_joins_mature_labels_and_counts_the_rest() -> None:
    cutoff = DAY0 + 12 * DAY_MS  # days 0..4 are mature
    decisions = table(
        [
            (10, DAY0 + 2 * DAY_MS, 0.2),
            (11, DAY0 + 1 * DAY_MS, 0.1),
            (12, DAY0 + 3 * DAY_MS, 0.0),  # no label: unlabelled
            (10, DAY0 + 2 * DAY_MS, 0.3),  # decided twice: the last wins
            (13, DAY0 + 6 * DAY_MS, 0.6),  # day 6 is not mature yet
            (14, DAY0 + 4 * DAY_MS + 1, 0.4),
        ]
    )
    known = labels(
        [
            (11, 0, DAY0 + 2 * DAY_MS),
            (10, 0, DAY0 + 3 * DAY_MS),  # analyst: genuine ...
            (10, 1, DAY0 + 9 * DAY_MS),  # ... then a chargeback: fraud wins, it is later
            (14, 1, DAY0 + 5 * DAY_MS),
            (14, 0, cutoff + 1),  # a reversal not known at the cut-off
            (13, 1, DAY0 + 7 * DAY_MS),
        ]
    )
    got = assemble(decisions, known, cutoff_ms=cutoff, label_delay_ms=DELAY)
    assert got.transaction_id.tolist() == [11, 10, 14]  # in time order
    assert got.is_fraud.tolist() == [0, 1, 1]
    assert got.features[:, 0].tolist() == pytest.approx([0.1, 0.3, 0.4])
    assert got.card_id.tolist() == [102, 101, 102]
    assert got.days.tolist() == [17_701, 17_702, 17_704]
    assert got.counts.to_json() == {
        "decisions": 6,
        "duplicates": 1,
        "immature": 1,
        "unlabelled": 1,
        "labelled": 3,
        "frauds": 2,
    }
    holdout = got.select(got.days == 17_704)
    assert holdout.transaction_id.tolist() == [14]
    assert holdout.feature_names == FEATURE_NAMES


def test_assemble_of_nothing_is_an_empty_set() -> None:
    empty = DecisionCollector().table()
    got = assemble(empty, LabelCollector(cutoff_ms=DAY0).table(), cutoff_ms=DAY0, label_delay_ms=0)
    assert len(got) == 0
    assert got.features.shape == (0, WIDTH)


def test_assemble_refuses_a_matrix_of_another_width() -> None:
    decisions = DecisionTable(
        np.array([1]), np.array([1]), np.array([DAY0]), np.zeros((1, WIDTH + 1), np.float32)
    )
    with pytest.raises(FeatureSetMismatchError, match=f"{WIDTH + 1} values"):
        assemble(decisions, labels([(1, 1, DAY0)]), cutoff_ms=DAY0 * 2, label_delay_ms=0)
