"""Exactly-once scoring on three brokers while one of them goes away and comes back.

Every topic has three replicas and ``min.insync.replicas=2``, so two brokers
still take every write. The broker that coordinates the scorer's group is
stopped mid-stream and started again; the scorer's metrics are scraped every
0.5 s into a timeline that shows the stall and the recovery. At the end every
transaction has exactly one committed decision with the features an
uninterrupted run serves.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from eos_helpers import assert_same_features, read_committed_decisions
from fault_helpers import (
    BackgroundReplay,
    ClusterTopics,
    CommittedOffsets,
    ScorerProcess,
    Timeline,
    co_partitioned_topics,
    describe_features_mismatch,
    group_coordinator,
    reference_decisions,
    rerun_topics,
    spawn_scorer,
    wait_until,
)
from scorer_helpers import (
    env_for,
    scorer_settings,
    serve_champion,
    simulated,
)

from pipeline.errors import FraudError
from pipeline.localkafka import ClusterSpec, LocalCluster, find_free_port_block
from pipeline.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PARTITIONS = 3
REPLAY_SECONDS = 40.0
DOWN_SECONDS = 10.0


def _three_brokers(tmp_path: Path, attempts: int = 3) -> LocalCluster:
    """A started 3-node cluster on free ports (another attempt if a port was taken meanwhile)."""
    for attempt in range(attempts):
        spec = ClusterSpec(
            cache_dir=load_settings().cache_dir,
            run_root=tmp_path / f"kafka-{attempt}",
            name="eos-broker-loss",
            brokers=3,
            base_port=find_free_port_block(6),
        )
        cluster = LocalCluster(spec)
        try:
            cluster.up(timeout_s=180)
            return cluster
        except FraudError:
            cluster.down()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _stop_broker(cluster: LocalCluster, node_id: int, how: str) -> None:
    """``graceful``: SIGTERM (controlled shutdown moves leadership first).
    ``crash``: SIGKILL (the controller notices only when the broker's session expires)."""
    if how == "crash":
        pid = cluster.node_pid(node_id)
        assert pid is not None, f"broker {node_id} is not running"
        os.kill(pid, signal.SIGKILL)
    cluster.stop_node(node_id, grace_s=30)  # also reaps the process and clears its pid file
    assert cluster.node_pid(node_id) is None


def _report(how: str, n: int, timeline: Timeline | None, at: dict[str, float]) -> str:
    """The stall and recovery in words, then the timeline (also for failure messages)."""
    if timeline is None:
        return f"broker-loss run ({how}): no timeline (failed during set-up)"
    origin = timeline.origin
    lines = [f"broker-loss run ({how}): {n} transactions, set-up {at['setup']:.0f}s"]
    stopped = at.get("stopped")
    if stopped is not None:
        stall_s, resumed_s = timeline.stall_after(stopped)
        errors = max((s.errors for s in timeline.samples if s.up), default=0.0)
        restarted = at.get("restarted")
        lines.append(
            f"broker stopped at +{stopped - origin:.1f}s"
            + (f", serving again at +{restarted - origin:.1f}s" if restarted else "")
        )
        lines.append(
            f"longest stall without new decisions after the stop: {stall_s:.1f}s "
            f"(decisions growing again {_seconds(resumed_s)} after the stop); "
            f"scorer errors_total {errors:.0f}"
        )
        if "finished" in at:
            lines.append(f"all input committed {at['finished'] - stopped:.1f}s after the stop")
    return "\n".join([*lines, *timeline.rows()])


@pytest.mark.parametrize(
    "how",
    [
        "graceful",
        pytest.param(
            "crash",
            marks=[
                pytest.mark.slow,
                pytest.mark.xfail(
                    strict=False,
                    reason="kill -9 of the group's coordinator: librdkafka can block in "
                    "send_offsets_to_transaction or fence the static member; the scorer now exits "
                    "(watchdog, fatal consumer errors) and the test restarts it once, but recovery "
                    "within the test's time is not yet reliable",
                ),
            ],
        ),
    ],
)
def test_one_broker_of_three_down_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, how: str
) -> None:
    began = time.monotonic()
    frame = simulated(days=10, customers=3000, terminals=6000, seed=13)
    n = len(frame)
    cluster = _three_brokers(tmp_path)
    scorer: ScorerProcess | None = None
    timeline: Timeline | None = None
    offsets: list[CommittedOffsets] = []
    at: dict[str, float] = {}
    try:
        create = ClusterTopics(cluster.bootstrap_servers, replication_factor=3, min_isr=2)
        topics = co_partitioned_topics(create, PARTITIONS)
        settings = scorer_settings(cluster.bootstrap_servers, topics, tmp_path / "models")
        serve_champion(settings, frame, train_days=7)
        at["setup"] = time.monotonic() - began

        group = f"eos-broker-loss-{uuid.uuid4().hex[:8]}"
        worker = scorer = spawn_scorer(env_for(settings), "b1", group, metrics=True)
        url = worker.metrics_url()
        wait_until(lambda: bool(worker.owned()), "scorer assigned", 120, [worker])
        progress = CommittedOffsets(settings, group, topics.transactions, PARTITIONS)
        sampled = CommittedOffsets(settings, group, topics.transactions, PARTITIONS)
        offsets += [progress, sampled]
        timeline = Timeline(url, committed=lambda: sampled.total(2.0)).start()
        feed = BackgroundReplay(settings, frame, REPLAY_SECONDS).start()
        timeline.mark("replay starts")

        wait_until(lambda: progress.total() > n * 3 // 10, "30% committed", 180, [worker])
        victim = group_coordinator(settings, group)
        timeline.mark(f"stop broker {victim} (group coordinator): {how}")
        at["stopped"] = time.monotonic()
        _stop_broker(cluster, victim, how)
        timeline.mark(f"broker {victim} gone")
        time.sleep(DOWN_SECONDS)
        timeline.mark(f"start broker {victim}")
        cluster.start_node(victim, timeout_s=120)
        at["restarted"] = time.monotonic()
        timeline.mark(f"broker {victim} serving")

        # A worker that exits on an error it cannot recover from is restarted once, as a
        # supervisor would; a worker that hangs fails the test.
        try:
            wait_until(lambda: progress.total() >= n, "all input committed", 180, [worker])
        except AssertionError:
            if worker.alive() or progress.total() >= n:
                raise
            timeline.mark(f"scorer exited ({worker.process.returncode}); restarted")
            at["scorer_restarted"] = time.monotonic()
            print(f"scorer exited:\n{worker.tail(20)}")
            worker = scorer = spawn_scorer(env_for(settings), "b1", group, metrics=True)
            timeline.url = worker.metrics_url()
            wait_until(lambda: progress.total() >= n, "all input committed", 180, [worker])
        at["finished"] = time.monotonic()
        timeline.mark("all input committed")
        feed.join(120)
        rc = worker.terminate(60)
        timeline.stop()
        report = _report(how, n, timeline, at)
        assert rc == 0, f"{report}\n{worker.tail()}"

        actual = read_committed_decisions(settings, topics.decisions)
        reference_settings = settings.model_copy(
            update={"topics": rerun_topics(create, topics, PARTITIONS)}
        )
        expected = reference_decisions(reference_settings, n)
        ids = actual["transaction_id"]
        verdict = describe_features_mismatch(expected, actual)
        assert len(ids) == n, f"{verdict}\n{report}"
        assert len(np.unique(ids)) == n, f"{verdict}\n{report}"
        assert set(ids.tolist()) == set(frame["transaction_id"].tolist()), report
        assert_same_features(expected, actual)
    finally:
        if timeline is not None:
            timeline.stop()
        print("\n" + _report(how, n, timeline, at))
        if scorer is not None:
            print(f"scorer log tail:\n{scorer.tail(25)}")
            if scorer.alive():  # a hang: show where the worker is blocked
                print(f"scorer stacks at the end:\n{scorer.dump_stacks()}")
            scorer.kill()
        for committed in offsets:
            committed.close()
        gc.collect()  # drop clients in reference cycles before their brokers go
        cluster.down()
        print(f"broker-loss test ({how}): {time.monotonic() - began:.0f}s in all")
