"""Exactly-once while a third worker joins and leaves again and again (``make test-slow``).

Two workers score a paced stream for about five minutes. Meanwhile a third one
joins, takes partitions, decides, and leaves, a dozen times or so: by SIGTERM
(finish the batch, commit, close) or by kill -9 (its open transaction is
aborted by the next worker under its id), at a random moment after it starts
deciding. After each departure the other two take its partitions back. At the
end every transaction has exactly one committed decision, with the features an
uninterrupted run serves.

The two-three-two test (``test_eos_rebalance.py``) passes through each of these
steps once; this one repeats the join and the departure, where a race between a
rebalance and a commit would show.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_helpers import (
    BackgroundReplay,
    CommittedOffsets,
    ScorerProcess,
    assert_decided_once_as_reference,
    co_partitioned_topics,
    kill_all,
    owner_of_all,
    scrape,
    spawn_scorer,
    wait_until,
)
from scorer_helpers import env_for, scorer_settings, serve_champion, simulated

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

PARTITIONS = 6
REPLAY_SECONDS = 300.0
IDLE_TIMEOUT_S = 25.0
"""Longer than the 15 s session timeout (see ``test_eos_rebalance.py``)."""


def test_a_worker_joining_and_leaving_again_and_again_loses_and_duplicates_nothing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    began = time.monotonic()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    frame = simulated(days=42, customers=3000, terminals=6000, seed=23)
    n = len(frame)
    topics = co_partitioned_topics(topic_factory, PARTITIONS)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    serve_champion(settings, frame, train_days=10)
    env = env_for(settings)
    group = f"eos-churn-{uuid.uuid4().hex[:8]}"
    progress = CommittedOffsets(settings, group, topics.transactions, PARTITIONS)
    feed = BackgroundReplay(settings, frame, REPLAY_SECONDS)
    workers: list[ScorerProcess] = []
    log: list[str] = [f"seed {seed}; {n} transactions over {REPLAY_SECONDS:.0f}s"]
    departures = {"SIGTERM": 0, "kill -9": 0}

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - began:6.1f}s {what} (committed {progress.total()}/{n})")

    try:
        w1 = spawn_scorer(env, "w1", group, idle_timeout_s=IDLE_TIMEOUT_S)
        w2 = spawn_scorer(env, "w2", group, idle_timeout_s=IDLE_TIMEOUT_S)
        workers += [w1, w2]
        wait_until(lambda: bool(w1.owned() and w2.owned()), "w1, w2 assigned", 120, [w1, w2])
        feed.start()
        note("replay started")
        while feed.running:
            w3 = spawn_scorer(env, "w3", group, idle_timeout_s=IDLE_TIMEOUT_S, metrics=True)
            workers.append(w3)
            url = w3.metrics_url()
            wait_until(
                lambda w3=w3, url=url: (
                    bool(w3.owned()) and (scrape(url)["decisions_out"] > 0 or progress.total() >= n)
                ),
                "w3 assigned and deciding",
                120,
                [w1, w2, w3],
            )
            moved = sorted(w3.owned())
            time.sleep(rng.uniform(0.0, 2.0))
            if rng.random() < 0.5:
                assert w3.terminate(60) == 0, w3.tail(200)
                assert w3.decided() is not None, w3.tail(200)  # its exit summary
                how = "SIGTERM"
            else:
                w3.kill()
                how = "kill -9"
            departures[how] += 1
            note(f"w3 held {moved}, left by {how}")
            wait_until(
                lambda moved=moved: owner_of_all([w1, w2], moved),
                "w3's partitions taken over",
                90,
                [w1, w2],
            )
        note("replay ended")
        wait_until(lambda: progress.total() >= n, "all input committed", 240, [w1, w2])
        feed.join(60)
        for worker in (w1, w2):
            assert worker.wait_exit(IDLE_TIMEOUT_S + 60) == 0, worker.tail()
        note(f"w1, w2 exited on idle timeout; departures of w3: {departures}")
    except BaseException:
        for worker in workers[:2] + workers[-1:]:
            print(f"--- {worker.name} (rc {worker.process.poll()}):\n{worker.tail(200)}")
        raise
    finally:
        kill_all(workers)
        progress.close()
        print("\n".join(["", "churn timeline:", *log]))

    assert departures["SIGTERM"] + departures["kill -9"] >= 5, log
    assert_decided_once_as_reference(
        settings, topic_factory, PARTITIONS, frame["transaction_id"].to_numpy()
    )
    print(f"churn test: {n} transactions, {time.monotonic() - began:.0f}s in all")
