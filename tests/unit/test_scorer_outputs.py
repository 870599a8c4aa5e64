"""The scorer's output records: the vectorized Decision, Alert and window-statistics
paths equal the record path."""

from __future__ import annotations

import numpy as np

from pipeline.features import FEATURE_NAMES
from pipeline.policy import APPROVE, DECLINE, REVIEW
from pipeline.scorer.outputs import (
    PACKED_ALERTS_FROM,
    BatchRows,
    alert_records,
    decision_records,
    encode_alerts,
    encode_decisions,
    encode_reasons,
    encode_window_stats,
    severity,
    severity_codes,
)
from pipeline.scoring import ServingModel
from pipeline.scoring.engine import ScoredBatch
from pipeline.scoring.reasons import Reason
from pipeline.scoring.window_stats import WindowStats
from pipeline.serde import Serde, fast_encode
from pipeline.serde.fast_encode import SEVERITY_SYMBOLS

ALERTS = Serde.local().codec("Alert")
DECISIONS = Serde.local().codec("Decision")
STATS = Serde.local().codec("MonitorStats")


def test_severity_codes_follow_severity_row_by_row() -> None:
    actions = np.array([REVIEW, REVIEW, REVIEW, DECLINE, DECLINE, DECLINE, APPROVE], np.int8)
    scores = np.array([0.1, 0.7, 0.69999, 0.5, 0.97, 0.96999, 0.99])
    codes = severity_codes(actions, scores)
    assert [SEVERITY_SYMBOLS[c] for c in codes] == [
        severity(int(a), float(s)) for a, s in zip(actions, scores, strict=True)
    ]


def test_alert_payloads_equal_fastavro_of_the_alert_records() -> None:
    rng = np.random.default_rng(3)
    n = 40
    rows = BatchRows(
        transaction_id=np.arange(10**12, 10**12 + n, dtype=np.int64),
        timestamp=1_522_540_800_000 + rng.integers(0, 10**9, n),
        card_id=rng.integers(0, 5000, n),
        terminal_id=rng.integers(0, 10000, n),
        amount=np.round(rng.gamma(2.0, 40.0, n), 2),
        partition=rng.integers(0, 6, n),
        offset=rng.integers(0, 10**7, n),
    )
    scores = rng.random(n)
    actions = np.where(scores > 0.9, DECLINE, np.where(scores > 0.5, REVIEW, APPROVE)).astype(
        np.int8
    )
    flagged = np.flatnonzero(actions != APPROVE)
    reasons = {
        int(row): [Reason(FEATURE_NAMES[k], 0.1 * (k + 1), f"text é {k}") for k in range(row % 4)]
        for row in flagged
    }
    scored = ScoredBatch(scores, actions, flagged, reasons)
    model = ServingModel("fraud", "v7", None, tuple(FEATURE_NAMES), "fs-1")  # type: ignore[arg-type]
    expected = ALERTS.encode_batch(record for _, record in alert_records(rows, scored, model, 123))
    assert len(flagged) >= PACKED_ALERTS_FROM  # the packed path
    assert encode_alerts(ALERTS, rows, scored, model, 123) == expected
    # The reasons encoded once serve the Decisions and the Alerts alike.
    shared = encode_reasons(scored)
    assert len(shared.codes) == sum(1 for r in reasons.values() if r)
    assert encode_alerts(ALERTS, rows, scored, model, 123, reasons=shared) == expected
    features = rng.random((n, len(FEATURE_NAMES))).astype(np.float32)
    decisions = DECISIONS.encode_batch(decision_records(rows, features, scored, model, 123, 4.5))
    assert encode_decisions(DECISIONS, rows, features, scored, model, 123, 4.5) == decisions
    assert (
        encode_decisions(DECISIONS, rows, features, scored, model, 123, 4.5, reasons=shared)
        == decisions
    )


def test_a_few_alerts_take_the_record_path_with_the_same_bytes() -> None:
    rows = BatchRows(
        transaction_id=np.arange(5, dtype=np.int64),
        timestamp=np.full(5, 1_522_540_800_000, np.int64),
        card_id=np.arange(5, dtype=np.int64),
        terminal_id=np.arange(5, dtype=np.int64),
        amount=np.full(5, 12.5),
        partition=np.zeros(5, np.int64),
        offset=np.arange(5, dtype=np.int64),
    )
    scores = np.array([0.1, 0.99, 0.2, 0.75, 0.3])
    actions = np.array([APPROVE, DECLINE, APPROVE, REVIEW, APPROVE], np.int8)
    flagged = np.array([1, 3])
    reasons = {1: [Reason("amount", 0.5, "large amount")], 3: []}
    scored = ScoredBatch(scores, actions, flagged, reasons)
    model = ServingModel("fraud", "v7", None, tuple(FEATURE_NAMES), "")  # type: ignore[arg-type]
    payloads = encode_alerts(ALERTS, rows, scored, model, 9)
    assert len(flagged) < PACKED_ALERTS_FROM
    assert payloads == fast_encode.encode_alerts(
        transaction_id=np.array([1, 3]), card_id=np.array([1, 3]), terminal_id=np.array([1, 3]),
        timestamp=np.full(2, 1_522_540_800_000), amount=np.full(2, 12.5),
        score=np.array([0.99, 0.75]), action=np.array([DECLINE, REVIEW]),
        severity=np.array([3, 1]), decided_at=9, source_partition=np.zeros(2, np.int64),
        source_offset=np.array([1, 3]), model_name="fraud", model_version="v7",
        schema_id=fast_encode.schema_id_for(ALERTS), reasons={0: [("amount", 0.5, "large amount")]},
    )  # fmt: skip
    assert [ALERTS.decode(p)["severity"] for p in payloads] == ["CRITICAL", "MEDIUM"]


def test_window_stats_payloads_equal_fastavro_of_the_window_records() -> None:
    rng = np.random.default_rng(11)
    hour = 3_600_000
    stats = WindowStats(length_ms=hour, grace_ms=0, n_features=len(FEATURE_NAMES), bins=20)
    n = 3000
    ts = 1_522_540_800_000 + rng.integers(0, 40 * hour, n)  # a backlog: dozens of windows
    features = rng.normal(50.0, 30.0, (n, len(FEATURE_NAMES))).astype(np.float32)
    features[rng.random(features.shape) < 0.05] = np.nan
    stats.add(
        ts, rng.random(n), rng.integers(0, 3, n).astype(np.int8), features, 3.25,
        rng.integers(0, 6, n),
    )  # fmt: skip
    stats.dead_letter(4)
    stats._row(1_522_540_800_000 + 45 * hour)  # a window opened by a dead letter only: empty
    windows = stats.drain()
    assert len(windows) > 30 and any(w.count == 0 for w in windows)
    model = ServingModel("fraud", "v3", None, tuple(FEATURE_NAMES), "fs-2")  # type: ignore[arg-type]
    expected = STATS.encode_batch(
        w.record(
            worker_id="scorer-1",
            model_name="fraud",
            model_version="v3",
            feature_set_version="fs-2",
            feature_names=list(FEATURE_NAMES),
        )
        for w in windows
    )
    assert encode_window_stats(STATS, windows, "scorer-1", model) == expected
    assert encode_window_stats(STATS, [], "scorer-1", model) == []


def test_monitor_stats_without_features_or_bins_encode_empty_arrays() -> None:
    record = {
        "worker_id": "w", "model_name": "fraud", "model_version": "v3",
        "rollout_arm": "champion", "window_start": 0, "window_end": 60_000, "count": 2,
        "approved": 1, "reviewed": 0, "declined": 1, "alerts": 1, "dead_letters": 0,
        "score_histogram": [], "feature_set_version": "", "feature_names": [],
        "feature_mean": [], "feature_std": [], "latency_ms_mean": 0.5, "latency_ms_max": 1.0,
    }  # fmt: skip
    one = np.ones(1, np.int64)
    assert fast_encode.encode_monitor_stats(
        worker_id="w", model_name="fraud", model_version="v3", window_start=one * 0,
        window_end=one * 60_000, count=one * 2, approved=one, reviewed=one * 0, declined=one,
        alerts=one, dead_letters=one * 0, score_histogram=np.zeros((1, 0), np.int64),
        feature_set_version="", feature_names=[], feature_mean=np.zeros((1, 0)),
        feature_std=np.zeros((1, 0)), latency_ms_mean=np.array([0.5]),
        latency_ms_max=np.array([1.0]), schema_id=fast_encode.schema_id_for(STATS),
    ) == STATS.encode_batch([record])  # fmt: skip
