"""Exactly-once scoring: crashes lose nothing, duplicate nothing, and restore state."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from eos_helpers import (
    assert_same_features,
    kill_hard,
    read_committed_decisions,
    start_scorer,
    stop_gracefully,
    wait_for_progress,
)
from fault_helpers import reference_decisions, rerun_topics
from scorer_helpers import (
    PARTITIONS,
    env_for,
    scorer_settings,
    scorer_topics,
    serve_champion,
    simulated,
)

from pipeline.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_kill_9_three_times_loses_and_duplicates_nothing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    frame = simulated(days=21, customers=5000, terminals=10000, seed=5)
    n = len(frame)
    assert n >= 200_000
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    serve_champion(settings, frame, train_days=14)
    sent = replay(settings, frame)
    assert sent.transactions == n

    expected = reference_decisions(settings, n, timeout_s=600)  # one uninterrupted run

    # The same input, killed -9 at random points three times.
    crash_topics = rerun_topics(topic_factory, topics, PARTITIONS)
    crash_settings = settings.model_copy(update={"topics": crash_topics})
    env = env_for(crash_settings)
    rng = random.Random(42)
    progress = 0
    for attempt in range(3):
        process = start_scorer(env, "crash-1", "eos-crash")
        target = progress + rng.randint(20_000, 45_000)
        progress = wait_for_progress(
            crash_settings, "eos-crash", topics.transactions, PARTITIONS, target, process
        )
        kill_hard(process)
        assert progress < n, f"attempt {attempt}: finished before the kill; raise the data size"
    process = start_scorer(env, "crash-1", "eos-crash", "--idle-timeout", "15")
    wait_for_progress(
        crash_settings, "eos-crash", topics.transactions, PARTITIONS, n - 1, process, timeout_s=300
    )
    stop_gracefully(process)

    actual = read_committed_decisions(crash_settings, crash_topics.decisions)
    ids = actual["transaction_id"]
    assert len(ids) == n, f"{len(ids)} committed decisions for {n} transactions"
    assert len(np.unique(ids)) == n
    assert set(ids.tolist()) == set(frame["transaction_id"].tolist())
    assert_same_features(expected, actual)
