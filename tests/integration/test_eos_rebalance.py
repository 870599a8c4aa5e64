"""Exactly-once scoring while the group changes: two, three, then two workers; a kill -9.

The stream flows (a paced replay) while workers join, leave on SIGTERM and crash;
at the end every transaction has exactly one committed decision, with the
features an uninterrupted run serves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from eos_helpers import assert_same_features
from fault_helpers import (
    BackgroundReplay,
    CommittedOffsets,
    ScorerProcess,
    assert_decided_once_as_reference,
    co_partitioned_topics,
    describe_features_mismatch,
    kill_all,
    owner_of_all,
    reference_decisions,
    rerun_topics,
    scrape,
    spawn_scorer,
    wait_until,
    wait_visible_decisions,
)
from scorer_helpers import (
    env_for,
    scorer_settings,
    serve_champion,
    simulated,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PARTITIONS = 6
REPLAY_SECONDS = 50.0
IDLE_TIMEOUT_S = 25.0
"""Longer than the 15 s session timeout: a departed static member's partitions come
back to the survivors only when its session expires."""


def test_two_three_two_workers_and_a_crash_lose_and_duplicate_nothing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    began, wall_ms = time.monotonic(), int(time.time() * 1000)
    frame = simulated(days=14, customers=3000, terminals=6000, seed=11)
    n = len(frame)
    assert 60_000 <= n <= 100_000
    topics = co_partitioned_topics(topic_factory, PARTITIONS)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    serve_champion(settings, frame, train_days=10)
    env = env_for(settings)
    group = f"eos-rebalance-{uuid.uuid4().hex[:8]}"
    progress = CommittedOffsets(settings, group, topics.transactions, PARTITIONS)
    feed = BackgroundReplay(settings, frame, REPLAY_SECONDS)
    workers: list[ScorerProcess] = []
    log: list[str] = [f"{time.monotonic() - began:6.1f}s data, model, terminal table ready"]

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - began:6.1f}s {what} (committed {progress.total()}/{n})")

    try:
        w1 = spawn_scorer(env, "w1", group, idle_timeout_s=IDLE_TIMEOUT_S)
        w2 = spawn_scorer(env, "w2", group, idle_timeout_s=IDLE_TIMEOUT_S)
        workers += [w1, w2]
        wait_until(lambda: bool(w1.owned() and w2.owned()), "w1, w2 assigned", 120, [w1, w2])
        feed.start()
        note(f"w1 holds {sorted(w1.owned())}, w2 holds {sorted(w2.owned())}; replay started")
        wait_until(lambda: progress.total() > n // 10, "10% committed", 180, [w1, w2])
        note("10% committed")

        # Three workers: w3 joins while the stream flows, takes partitions and decides.
        w3 = spawn_scorer(env, "w3", group, idle_timeout_s=IDLE_TIMEOUT_S, metrics=True)
        workers.append(w3)
        w3_metrics = w3.metrics_url()
        wait_until(
            lambda: bool(w3.owned()) and scrape(w3_metrics)["decisions_out"] > 0,
            "w3 assigned and deciding",
            120,
            [w1, w2, w3],
        )
        moved = sorted(w3.owned())
        note(f"w3 holds {moved} and decides; w1 {sorted(w1.owned())}, w2 {sorted(w2.owned())}")
        assert feed.running, "the stream ended before w3 took part; lengthen REPLAY_SECONDS"

        # Back to two: w3 leaves on SIGTERM (finish batch, commit, close).
        stopped_at = time.monotonic()
        assert w3.terminate(60) == 0, w3.tail()
        decided_by_w3 = w3.decided()
        assert decided_by_w3 is not None and decided_by_w3 > 0, w3.tail()
        note(f"w3 stopped by SIGTERM after deciding {decided_by_w3}")
        wait_until(
            lambda: owner_of_all([w1, w2], moved), "w3's partitions taken over", 90, [w1, w2]
        )
        takeover_s = time.monotonic() - stopped_at
        at_leave = progress.per_partition()
        wait_until(
            lambda: progress.moved_on(moved, at_leave),
            "progress on w3's former partitions",
            120,
            [w1, w2],
        )
        resumed_s = time.monotonic() - stopped_at
        note(
            f"w3's partitions reassigned after {takeover_s:.1f}s, progressing after {resumed_s:.1f}s"
        )

        # A crash: w2 is killed -9 mid-transaction and restarted under its id.
        wait_until(lambda: progress.total() > n * 2 // 3, "2/3 committed", 180, [w1, w2])
        crashed = sorted(w2.owned())
        kill_at = progress.per_partition()
        w2.kill()
        killed_at = time.monotonic()
        note(f"w2 killed -9 holding {crashed}")
        time.sleep(2.0)
        w2b = spawn_scorer(env, "w2", group, idle_timeout_s=IDLE_TIMEOUT_S)
        workers.append(w2b)
        wait_until(
            lambda: progress.moved_on(crashed, kill_at),
            "progress on the crashed worker's partitions",
            150,
            [w1, w2b],
        )
        crash_resume_s = time.monotonic() - killed_at
        note(f"w2 restarted; its partitions progressing {crash_resume_s:.1f}s after the kill")

        # Two workers finish the stream and stop on their own (idle timeout).
        wait_until(lambda: progress.total() >= n, "all input committed", 240, [w1, w2b])
        note("all input committed")
        feed.join(60)
        for worker in (w1, w2b):
            assert worker.wait_exit(IDLE_TIMEOUT_S + 60) == 0, worker.tail()
        note("w1, w2 exited on idle timeout")
    finally:
        kill_all(workers)
        progress.close()
        print("\n".join(["", f"rebalance timeline (0.0s = {wall_ms} ms epoch):", *log]))
        for worker in workers:
            events = [(round(at - began, 1), kind, p) for at, kind, p in worker.group_events()]
            print(f"{worker.name}: decided {worker.decided()}, group events {events}")

    assert_decided_once_as_reference(
        settings, topic_factory, PARTITIONS, frame["transaction_id"].to_numpy()
    )
    print(f"rebalance test: {n} transactions, {time.monotonic() - began:.0f}s in all")


def test_a_worker_killed_for_good_is_replaced_by_the_survivor_exactly_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """kill -9 without restart: the dead member's open transaction is never committed;
    the survivor takes its partitions once the session expires and resumes from the
    last committed offsets and changelog."""
    began = time.monotonic()
    frame = simulated(days=7, customers=3000, terminals=6000, seed=17)
    n = len(frame)
    topics = co_partitioned_topics(topic_factory, 3)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    serve_champion(settings, frame, train_days=5)
    env = env_for(settings)
    group = f"eos-loss-{uuid.uuid4().hex[:8]}"
    progress = CommittedOffsets(settings, group, topics.transactions, 3)
    feed = BackgroundReplay(settings, frame, 25.0)
    workers: list[ScorerProcess] = []
    log: list[str] = []

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - began:6.1f}s {what} (committed {progress.total()}/{n})")

    try:
        w1 = spawn_scorer(env, "w1", group)
        w2 = spawn_scorer(env, "w2", group)
        workers += [w1, w2]
        wait_until(lambda: bool(w1.owned() and w2.owned()), "w1, w2 assigned", 120, [w1, w2])
        feed.start()
        note(f"w1 holds {sorted(w1.owned())}, w2 holds {sorted(w2.owned())}; replay started")
        wait_until(lambda: progress.total() > n * 3 // 10, "30% committed", 180, [w1, w2])
        orphaned = sorted(w2.owned())
        at_kill = progress.per_partition()
        w2.kill()
        killed_at = time.monotonic()
        note(f"w2 killed -9 for good holding {orphaned}")
        wait_until(lambda: owner_of_all([w1], orphaned), "w1 takes over", 120, [w1])
        takeover_s = time.monotonic() - killed_at
        wait_until(lambda: progress.moved_on(orphaned, at_kill), "orphans progress", 180, [w1])
        resumed_s = time.monotonic() - killed_at
        note(f"w1 assigned the orphans after {takeover_s:.1f}s, committing after {resumed_s:.1f}s")
        wait_until(lambda: progress.total() >= n, "all input committed", 240, [w1])
        feed.join(60)
        assert w1.terminate(60) == 0, w1.tail()
        note("all input committed; w1 stopped by SIGTERM")
    finally:
        kill_all(workers)
        progress.close()
        print("\n".join(["", "worker-loss timeline:", *log]))

    actual, _ = wait_visible_decisions(settings, n)
    visible_s = time.monotonic() - killed_at
    print(f"all {len(actual['transaction_id'])} decisions visible {visible_s:.1f}s after the kill")
    expected = reference_decisions(
        settings.model_copy(update={"topics": rerun_topics(topic_factory, topics, 3)}), n
    )
    ids = actual["transaction_id"]
    summary = describe_features_mismatch(expected, actual)
    assert len(ids) == n, summary
    assert len(np.unique(ids)) == n, summary
    assert_same_features(expected, actual)
    print(f"worker-loss test: {n} transactions, {time.monotonic() - began:.0f}s in all")
