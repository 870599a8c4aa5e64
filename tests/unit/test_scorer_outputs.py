"""The scorer's output records: the vectorized Alert path equals the record path."""

from __future__ import annotations

import numpy as np

from pipeline.features import FEATURE_NAMES
from pipeline.policy import APPROVE, DECLINE, REVIEW
from pipeline.scorer.outputs import (
    BatchRows,
    alert_records,
    encode_alerts,
    severity,
    severity_codes,
)
from pipeline.scoring import ServingModel
from pipeline.scoring.engine import ScoredBatch
from pipeline.scoring.reasons import Reason
from pipeline.serde import Serde
from pipeline.serde.fast_encode import SEVERITY_SYMBOLS

ALERTS = Serde.local().codec("Alert")


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
    assert len(flagged) > 5 and encode_alerts(ALERTS, rows, scored, model, 123) == expected
