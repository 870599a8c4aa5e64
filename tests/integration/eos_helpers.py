"""Helpers of the exactly-once tests: scorer processes, committed read-back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.kafka import make_consumer
from pipeline.serde import Serde
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def start_scorer(
    env: dict[str, str], worker_id: str, group: str, *extra: str
) -> subprocess.Popen[str]:
    """``fraud score --exactly-once`` in its own process (so it can be killed -9)."""
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "score",
        "--exactly-once",
        "--no-metrics",
        "--worker-id",
        worker_id,
        "--group",
        group,
        "--batch-size",
        "1000",
        *extra,
    ]
    return subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_hard(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def stop_gracefully(process: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=timeout_s)
    return output


def committed_total(
    settings: Settings, group: str, topic: str, partitions: int, consumer: Consumer | None = None
) -> int:
    """Sum of the group's committed offsets on ``topic`` (progress of a scorer group).

    ``consumer`` (one of ``group``, never subscribed) is reused when given: building
    one per call costs a connection and a coordinator lookup.
    """
    own = consumer is None
    reader = make_consumer(settings, group) if consumer is None else consumer
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in reader.committed(tps, timeout=15))
    finally:
        if own:
            reader.close()


def wait_for_progress(
    settings: Settings,
    group: str,
    topic: str,
    partitions: int,
    beyond: int,
    process: subprocess.Popen[str],
    timeout_s: float = 120.0,
) -> int:
    """Wait until the group has committed past ``beyond`` records; return the total.

    Checked every 20 ms with one reader: at 100k+ events/s a coarser check lets the
    scorer run tens of thousands of records past ``beyond`` before the caller acts.
    """
    deadline = time.monotonic() + timeout_s
    reader = make_consumer(settings, group)
    try:
        while time.monotonic() < deadline:
            total = committed_total(settings, group, topic, partitions, reader)
            if total > beyond:
                return total
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(
                    f"scorer exited early ({process.returncode}): {output[-2000:]}"
                )
            time.sleep(0.02)
    finally:
        reader.close()
    raise AssertionError(f"no progress past {beyond} committed records in {timeout_s}s")


def read_committed_decisions(
    settings: Settings, topic: str, timeout_s: float = 120.0
) -> dict[str, np.ndarray]:
    """Every committed Decision on ``topic`` (read_committed, to the end of each partition)."""
    consumer = make_consumer(
        settings,
        f"verify-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed", "enable.partition.eof": True},
    )
    codec = Serde.local().codec("Decision")
    ids: list[int] = []
    versions: list[str] = []
    features: list[list[float]] = []
    origin: list[tuple[int, int, int, int, int]] = []
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + timeout_s
        while pending:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for message in consumer.consume(10_000, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    continue
                record = codec.decode(message.value() or b"")
                ids.append(record["transaction_id"])
                versions.append(record["model_version"])
                features.append(record["features"])
                # Where each copy came from and went, to explain a duplicate.
                origin.append(
                    (
                        record["source_partition"],
                        record["source_offset"],
                        record["decided_at"],
                        message.partition(),
                        message.offset(),
                    )
                )
    finally:
        consumer.close()
    return {
        "transaction_id": np.asarray(ids, np.int64),
        "features": np.asarray(features, np.float64).reshape(len(ids), -1),
        "model_version": np.asarray(versions),
        "origin": np.asarray(origin, np.int64).reshape(len(ids), 5),
    }


def assert_same_features(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    """Per transaction id, the served feature vectors agree (float32 rounding)."""
    order_e = np.argsort(expected["transaction_id"])
    order_a = np.argsort(actual["transaction_id"])
    np.testing.assert_array_equal(
        expected["transaction_id"][order_e], actual["transaction_id"][order_a]
    )
    e, a = expected["features"][order_e], actual["features"][order_a]
    np.testing.assert_array_equal(np.isnan(e), np.isnan(a))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(e), rtol=1e-6, atol=1e-6)
