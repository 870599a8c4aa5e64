"""Live model swaps: promote and roll back while the scorer runs, nothing lost.

A worker runs in a thread serving v1. The stream is replayed in parts:
part 1 under v1; ``fraud models promote v2`` (the CLI, in a subprocess);
part 2 under v2; part 3 replayed paced over a few seconds with a rollback
announced while it flows, so the switch back lands mid-stream; part 4 after the rollback applied; then a
champion whose artifact was tampered with is announced, refused, and part 5
is still decided by v1. Per source partition the models must follow each
other in offset order with one clean switch point each time.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scorer_helpers import (
    WorkerThread,
    day_index,
    decode_decisions,
    env_for,
    read_all,
    register,
    scorer_settings,
    scorer_topics,
    simulated,
    train_on,
)

from pipeline.control.announce import announce
from pipeline.metrics import ScorerMetrics
from pipeline.model.params import DEFAULT_PARAMS
from pipeline.registry import ModelRegistry
from pipeline.replay import replay
from pipeline.scorer import ScorerConfig, ScorerWorker

pytestmark = pytest.mark.integration

RUN_CLI = "import sys; from pipeline.cli import main; main(sys.argv[1:])"
PACED_S = 4.0
"""Wall time part 3 is spread over, so the rollback lands inside it."""
OTHER_PARAMS = DEFAULT_PARAMS.replace(n_estimators=30, max_depth=2, learning_rate=0.3)


def runs(labels: list[str]) -> list[str]:
    """Run-length labels: ``[a, a, b, a] -> [a, b, a]``."""
    return [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]


def test_promote_rollback_and_refused_swap_switch_cleanly(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    frame = simulated(days=21, seed=11)
    days = day_index(frame)
    registry = ModelRegistry(settings.registry_dir)
    v1 = register(registry, train_on(frame, days < 7), frame, alias="champion")
    v2_booster = train_on(frame, (days >= 7) & (days < 14), OTHER_PARAMS)
    v2 = register(registry, v2_booster, frame, params=OTHER_PARAMS)
    assert (v1.label, v2.label) == ("v1", "v2")

    stream = frame[days >= 14].reset_index(drop=True)
    bounds = np.linspace(0, len(stream), 6).astype(int)
    parts = [stream.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    part_of = {int(tx): index for index, part in enumerate(parts) for tx in part["transaction_id"]}

    metrics = ScorerMetrics()
    worker = ScorerWorker(
        settings,
        ScorerConfig(group_id=group_id, worker_id="swap", batch_size=200),
        metrics=metrics,
    )
    sent = 0
    with WorkerThread(worker) as running:
        summary = worker.summary

        def send(part: pd.DataFrame) -> None:
            nonlocal sent
            result = replay(settings, part)
            assert result.ok and result.transactions == len(part)
            sent += len(part)

        send(parts[0])
        running.wait_decided(sent)

        promoted = subprocess.run(
            [sys.executable, "-c", RUN_CLI, "models", "promote", "v2", "--reason", "test"],
            env={**os.environ, **env_for(settings)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert promoted.returncode == 0, promoted.stderr
        assert "announced fraud champion v2" in promoted.stdout
        running.wait_for(lambda: summary.model_swaps == 1, "the swap to v2")
        send(parts[1])
        running.wait_decided(sent)

        # Part 3 is paced over a few seconds; the rollback is announced mid-way.
        span_s = (parts[2]["timestamp"].max() - parts[2]["timestamp"].min()).total_seconds()
        paced = threading.Thread(
            target=replay, args=(settings, parts[2]), kwargs={"speed": span_s / PACED_S}
        )
        paced.start()
        running.wait_decided(sent + 100)
        update = registry.rollback(reason="test rollback")
        assert update.state.champion == 1
        announce(settings, update.name, update.state, "test rollback")
        paced.join(PACED_S + 30)
        sent += len(parts[2])
        running.wait_decided(sent)
        assert summary.model_swaps == 2
        send(parts[3])
        running.wait_decided(sent)

        v3 = register(registry, train_on(frame, days < 14), frame, alias="champion")
        artifact = bytearray(v3.artifact_path.read_bytes())
        artifact[len(artifact) // 2] ^= 0xFF
        v3.artifact_path.write_bytes(bytes(artifact))
        announce(settings, registry.name, registry.aliases(), "tampered artifact")
        running.wait_for(lambda: summary.model_refusals == 1, "the refusal of v3")
        send(parts[4])
        running.wait_decided(sent)

    assert (summary.decided, summary.dead_lettered) == (len(stream), 0)
    assert (summary.model_swaps, summary.model_refusals) == (2, 1)
    sample = metrics.registry.get_sample_value
    assert sample("fraud_scorer_model_refusals_total", {"reason": "load_failed"}) == 1
    assert sample("fraud_scorer_model_swaps_total") == 2

    decisions = decode_decisions(read_all(settings, topics.decisions))
    assert len(decisions) == decisions["transaction_id"].nunique() == len(stream)
    decisions["part"] = decisions["transaction_id"].map(part_of)
    assert decisions["part"].notna().all()
    versions = decisions.groupby("part")["model_version"].agg(lambda v: sorted(set(v)))
    assert versions[0] == ["v1"]
    assert versions[1] == ["v2"]
    assert versions[2] == ["v1", "v2"]  # the switch back landed inside part 3
    assert versions[3] == ["v1"] and versions[4] == ["v1"]

    # One clean switch point per partition each time: v1, then v2, then v1, by offset.
    decisions = decisions.sort_values(["source_partition", "source_offset"])
    for partition, group in decisions.groupby("source_partition"):
        assert group["source_offset"].is_unique
        assert runs(group["model_version"].tolist()) == ["v1", "v2", "v1"], partition
        assert group["part"].is_monotonic_increasing, partition

    # The label does not lie: v2's decisions carry v2's scores of the served features.
    under_v2 = decisions[decisions["model_version"] == "v2"]
    served = np.array(under_v2["features"].tolist(), dtype=np.float32)
    expected = v2_booster.inplace_predict(served)
    np.testing.assert_allclose(under_v2["score"].to_numpy(), expected, rtol=0, atol=1e-6)
    v1_scores = registry.load("v1").booster.inplace_predict(served)
    assert np.abs(v1_scores - expected).max() > 1e-3
