"""The monitor app against a real broker: shifted stats in, one retrain request out."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from pipeline.registry import ModelRegistry
from pipeline.serde import DLQ_ERROR_REASON, Serde

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
START_MS = 1_530_403_200_000  # 2018-07-01


def _stats(window: int, worker: str, rng: np.random.Generator, shifted: bool) -> dict[str, Any]:
    amount = rng.normal(50.0, 40.0, 100).clip(0.1) * (1.8 if shifted else 1.0)
    ratio = rng.normal(1.0, 0.5, 100).clip(0.05)
    scores = rng.beta(1, 30, 100)
    histogram, _ = np.histogram(scores, bins=20, range=(0.0, 1.0))
    return {
        "worker_id": worker,
        "model_name": "fraud",
        "model_version": "1",
        "window_start": START_MS + window * HOUR_MS,
        "window_end": START_MS + (window + 1) * HOUR_MS,
        "count": 100,
        "approved": 100,
        "score_histogram": histogram.tolist(),
        "feature_names": ["amount", "card_amount_to_mean_30d"],
        "feature_mean": [float(amount.mean()), float(ratio.mean())],
        "feature_std": [float(amount.std()), float(ratio.std())],
    }


def _outcome(transaction_id: int, model_version: str = "1") -> dict[str, Any]:
    ts = START_MS + transaction_id * 1000
    return {
        "transaction_id": transaction_id,
        "card_id": transaction_id % 7,
        "timestamp": ts,
        "score": 0.1,
        "action": "APPROVE",
        "model_name": "fraud",
        "model_version": model_version,
        "is_fraud": False,
        "decided_at": ts + 5,
        "label_timestamp": ts + 7 * 24 * HOUR_MS,
    }


def _register_trained_on_first_outcomes(root: Path) -> None:
    """Version 1 of 'fraud', trained on transactions up to 2.5 s after START_MS (outcomes 1, 2)."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2))
    params = {"max_depth": 2, "objective": "binary:logistic", "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), 2)
    start = dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC).replace(tzinfo=None)
    end = start + dt.timedelta(milliseconds=2_500)
    ModelRegistry(root, "fraud").register(
        booster,
        features=["amount", "card_amount_to_mean_30d"],
        params=params,
        data_range=(start.isoformat(), end.isoformat()),
        metrics={},
    )


def _drain(consumer: Consumer, into: dict[str, list[Any]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        topic = message.topic()
        assert topic is not None
        into.setdefault(topic, []).append(message)


def test_shift_gives_drift_events_and_one_retrain_request(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    names = {
        field: topic_factory(prefix=f"mon-{field.replace('_', '-')}")
        for field in ("monitor_stats", "outcomes", "drift_events", "retrain_requests", "dlq")
    }
    serde = Serde.local()
    stats_codec, outcome_codec = serde.codec("MonitorStats"), serde.codec("Outcome")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "compression.type": "lz4"})
    rng = np.random.default_rng(7)
    for window in range(24):
        for worker in ("w1", "w2"):
            record = _stats(window, worker, rng, shifted=window >= 12)
            producer.produce(names["monitor_stats"], stats_codec.encode(record), key=b"fraud")
    producer.produce(names["monitor_stats"], b"not avro at all", key=b"fraud")
    # a worker reporting a window already closed
    producer.produce(names["monitor_stats"], stats_codec.encode(_stats(3, "w1", rng, False)))
    for tid in range(1, 6):
        producer.produce(names["outcomes"], outcome_codec.encode(_outcome(tid)), key=b"fraud")
    producer.produce(names["outcomes"], outcome_codec.encode(_outcome(3)))  # duplicate
    producer.produce(names["outcomes"], outcome_codec.encode(_outcome(9, model_version="")))
    producer.produce(names["outcomes"], b"\x00\x00\x00\x00")  # truncated frame
    assert producer.flush(30) == 0
    del producer

    _register_trained_on_first_outcomes(tmp_path / "models")
    env = dict(
        os.environ,
        FRAUD_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        FRAUD_REGISTRY_DIR=str(tmp_path / "models"),
    )
    env.update({f"FRAUD_TOPICS__{field.upper()}": name for field, name in names.items()})
    command = [
        sys.executable,
        "-c",
        "from pipeline.cli.monitor import monitor; monitor()",
        "--app-id",
        f"test-monitor-{uuid.uuid4().hex[:8]}",
        "--no-metrics",
        "--run-for",
        "120",
        "--block-min-count",
        "200",
        "--reference-blocks",
        "3",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([names["drift_events"], names["retrain_requests"], names["dlq"]])
    seen: dict[str, list[Any]] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            _drain(consumer, seen, 1.0)
            if seen.get(names["retrain_requests"]) and len(seen.get(names["dlq"], [])) >= 5:
                break
        _drain(consumer, seen, 3.0)  # a second request would show up here
    finally:
        consumer.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]

    drift = [
        serde.codec("DriftEvent").decode(m.value()) for m in seen.get(names["drift_events"], [])
    ]
    assert drift, stderr[-3000:]
    assert {e["signal"] for e in drift} >= {"feature:amount"}
    assert all(e["window_start"] >= START_MS + 12 * HOUR_MS for e in drift)
    requests = [
        serde.codec("RetrainRequest").decode(m.value())
        for m in seen.get(names["retrain_requests"], [])
    ]
    assert len(requests) == 1
    assert requests[0]["model_name"] == "fraud"
    assert requests[0]["drift_event_ids"][0] in {e["event_id"] for e in drift}
    reasons = sorted(
        dict(m.headers())[DLQ_ERROR_REASON].decode() for m in seen.get(names["dlq"], [])
    )
    assert reasons == ["bad_magic", "duplicate", "too_old", "truncated", "unknown_transaction"]
    assert "dead_letters[duplicate] 1" in stderr
    assert "retrain_requests 1" in stderr
    # outcomes 1 and 2 lie in version 1's training data (read from the registry)
    assert "in_sample_outcomes 2" in stderr
