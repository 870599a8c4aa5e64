"""Online equals offline: what the scorer serves is what training computes.

Five weeks are simulated; a champion is trained on the first three. The
terminal histories of the whole frame are published first (``backfill``), so
the scorer's terminal table is complete. Then the whole history is replayed
through one worker, which starts with empty card state exactly as the offline
evaluator starts at the first row. For every transaction, and in particular
for the last two weeks, the served feature vector must equal
``feature_matrix(frame)`` within float32 rounding and the served score must
equal the booster's offline ``inplace_predict`` of the offline features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scorer_helpers import (
    day_index,
    decode_decisions,
    read_all,
    register,
    scorer_settings,
    scorer_topics,
    simulated,
    train_on,
)

from pipeline.features import FEATURE_NAMES, feature_matrix
from pipeline.registry import ModelRegistry
from pipeline.replay import replay
from pipeline.scorer import ScorerConfig, ScorerWorker
from pipeline.terminal import backfill

pytestmark = pytest.mark.integration

HISTORY_DAYS, REPLAY_DAYS = 21, 14
FLOAT32_ULPS = 2 * float(np.finfo(np.float32).eps)


def test_served_features_and_scores_equal_offline(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    frame = simulated(days=HISTORY_DAYS + REPLAY_DAYS, seed=21)
    days = day_index(frame)
    offline = feature_matrix(frame)
    booster = train_on(frame, days < HISTORY_DAYS)
    register(ModelRegistry(settings.registry_dir), booster, frame, alias="champion")

    published = backfill(settings, frame)
    assert published.terminals > 0
    sent = replay(settings, frame)
    assert sent.ok and sent.transactions == len(frame)

    worker = ScorerWorker(settings, ScorerConfig(group_id=group_id, worker_id="parity"))
    try:
        summary = worker.run(max_events=len(frame), idle_timeout_s=30)
    finally:
        worker.close()
    assert (summary.decided, summary.dead_lettered) == (len(frame), 0)

    decisions = decode_decisions(read_all(settings, topics.decisions))
    assert len(decisions) == decisions["transaction_id"].nunique() == len(frame)
    row_of = {int(tx): row for row, tx in enumerate(frame["transaction_id"])}
    rows = decisions["transaction_id"].map(row_of).to_numpy()
    served = np.array(decisions["features"].tolist(), dtype=np.float64)
    assert served.shape == (len(frame), len(FEATURE_NAMES))
    expected = offline[rows].astype(np.float64)

    # Features: equal within float32 rounding (2 ulps; NaN where offline has NaN), every
    # row and column. Measured: all but a handful of values are bit-identical.
    np.testing.assert_allclose(served, expected, rtol=FLOAT32_ULPS, atol=1e-6, err_msg="features")
    # Terminal features really came from the table: non-zero, and matching.
    terminal_columns = [i for i, name in enumerate(FEATURE_NAMES) if "terminal" in name]
    assert terminal_columns and (served[:, terminal_columns] != 0).any()

    # Scores: the served score is the offline prediction of the offline row.
    offline_scores = booster.inplace_predict(offline[rows])
    np.testing.assert_allclose(decisions["score"], offline_scores, rtol=0, atol=1e-5)

    # The claim that matters: the last two weeks, scored with three weeks of history
    # behind them in both evaluators.
    last = days[rows] >= HISTORY_DAYS
    assert last.sum() > len(frame) // 4
    np.testing.assert_allclose(served[last], expected[last], rtol=FLOAT32_ULPS, atol=1e-6)
    np.testing.assert_allclose(decisions["score"][last], offline_scores[last], rtol=0, atol=1e-5)
    assert decisions["model_version"].eq("v1").all()
