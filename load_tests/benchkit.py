"""Shared set-up of the benchmarks: a broker, a champion model, topics, input data.

Every benchmark reports ratios against a baseline measured in the same run,
because this machine is shared and noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.settings import Settings, load_settings  # noqa: E402


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker on free ports (torn down after)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get(
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS"
    )
    if configured:
        before = _topic_names(configured)
        try:
            yield configured
        finally:
            _delete_new_topics(configured, before)
        return
    from pipeline.localkafka import ClusterSpec, LocalCluster, find_free_port_block

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="fraud-bench-") as run_root:
        spec = ClusterSpec(
            cache_dir=settings.cache_dir,
            run_root=Path(run_root),
            name="bench",
            brokers=1,
            base_port=find_free_port_block(2),
        )
        cluster = LocalCluster(spec)
        log(f"starting a local broker on {cluster.bootstrap_servers}")
        cluster.up(timeout_s=120)
        try:
            yield cluster.bootstrap_servers
        finally:
            cluster.down()


_RUN_TOPIC = re.compile(r"-[0-9a-f]{8}$")


def _topic_names(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=15).topics)


def _delete_new_topics(bootstrap: str, before: set[str]) -> None:
    """Delete the topics this run created on a broker it did not start.

    Every benchmark topic ends in an 8-hex-digit run id; left behind, thousands
    of partitions pile up over repeated runs and slow the broker for the next.
    """
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        created = sorted(
            name
            for name in set(admin.list_topics(timeout=15).topics) - before
            if _RUN_TOPIC.search(name)
        )
        if not created:
            return
        for future in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(60)
        log(f"deleted the {len(created)} topics of this run")
    except Exception as exc:  # cleanup must not hide the run's own result or error
        log(f"could not delete this run's topics: {exc}")


def ceiling_batch(
    messages: list, tx_codec: Any, decision_codec: Any, model: Any
) -> tuple[list[bytes], list[Any], Any, Any]:
    """The I/O ceiling's work on one consumed batch, done as the scorer does it.

    Records are read with the scorer's calls (``map`` over the Message methods,
    one ``np.fromiter`` per offset column), decoded, and answered with blank
    Decisions. Returns the payloads with their keys, and the partition and
    offset of every record kept, for the caller's commit bookkeeping.
    """
    from confluent_kafka import Message

    errors = list(map(Message.error, messages))
    kept = (
        messages if errors.count(None) == len(messages) else [m for m in messages if not m.error()]
    )
    partitions = np.fromiter(map(Message.partition, kept), np.int64, len(kept))
    offsets = np.fromiter(map(Message.offset, kept), np.int64, len(kept))
    keys = list(map(Message.key, kept))
    columns = tx_codec.decode_columns(list(map(Message.value, kept)))
    if len(columns.indices) != len(kept):
        keys = [keys[i] for i in columns.indices.tolist()]
    return blank_decisions(decision_codec, columns, model), keys, partitions, offsets


def blank_decisions(
    decision_codec: Any,
    columns: Any,
    model: Any,
    decided_at: int = 0,
    processing_ms: float = 0.0,
) -> list[bytes]:
    """Decisions of the scorer's shape for decoded transactions, with no work behind
    them (zero features and score): what the I/O baselines produce."""
    from pipeline.features import FEATURE_NAMES
    from pipeline.scorer.outputs import BatchRows, encode_decisions
    from pipeline.scoring import ScoredBatch

    n = len(columns)
    zeros = np.zeros(n, np.int64)
    rows = BatchRows(
        columns.transaction_id,
        columns.timestamp,
        columns.card_id,
        columns.terminal_id,
        columns.amount,
        zeros,
        zeros,
    )
    features = np.zeros((n, len(FEATURE_NAMES)), np.float32)
    scored = ScoredBatch(np.zeros(n), np.zeros(n, np.int8), np.zeros(0, np.intp))
    return encode_decisions(
        decision_codec, rows, features, scored, model, decided_at, processing_ms
    )


def create_topics(settings: Settings, names: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.librdkafka_config())
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1) for name, partitions in names.items()]
    )
    for future in futures.values():
        future.result(30)


def isolated_topics(bootstrap: str, partitions: int, **overrides: str) -> Settings:
    """Settings whose every topic has a fresh uuid name, all created on the broker.

    The names are exported as FRAUD_TOPICS__* so subprocesses see them too.
    """
    from pipeline.kafka.admin import create_topics as create_all
    from pipeline.settings import TopicNames

    suffix = uuid.uuid4().hex[:8]
    for field in TopicNames.model_fields:
        os.environ[f"FRAUD_TOPICS__{field.upper()}"] = f"bench-{field}-{suffix}"
    settings = load_settings(kafka_bootstrap_servers=bootstrap, partitions=partitions, **overrides)
    create_all(settings)
    return settings


def topic_partitions(settings: Settings, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(settings.librdkafka_config()).list_topics(topic, timeout=15)
    return sorted(metadata.topics[topic].partitions)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def simulated(
    days: int, customers: int = 5000, terminals: int = 10000, seed: int = 11
) -> pd.DataFrame:
    from pipeline.data.simulator import SimulatorConfig, simulate

    return simulate(
        SimulatorConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    )


def register_champion(frame: pd.DataFrame, registry_dir: Path, train_days: int = 21) -> str:
    """Train with the product's default parameters on the first days; register as champion."""
    from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION, feature_matrix
    from pipeline.model.params import DEFAULT_PARAMS
    from pipeline.model.training import train_booster
    from pipeline.registry import ModelRegistry

    features = feature_matrix(frame)
    days = (frame["timestamp"] - frame["timestamp"].min()).dt.days.to_numpy()
    train = days < train_days
    booster = train_booster(
        features[train], frame["is_fraud"].to_numpy()[train], FEATURE_NAMES, DEFAULT_PARAMS
    )
    registry = ModelRegistry(registry_dir)
    version = registry.register(
        booster,
        features=FEATURE_NAMES,
        params=DEFAULT_PARAMS.to_dict(),
        data_range=(str(frame["timestamp"].min()), str(frame["timestamp"][train].max())),
        metrics={},
        feature_set_version=FEATURE_SET_VERSION,
        alias="champion",
    )
    return version.label


def produce_transactions(settings: Settings, topic: str, frame: pd.DataFrame) -> list[bytes]:
    """Avro-encode and produce the frame keyed by card; returns the payloads."""
    from confluent_kafka import Producer

    from pipeline.data.io import timestamps_ms
    from pipeline.serde import Serde

    codec = Serde.from_settings(settings).transactions()
    payloads = codec.encode_columns(
        frame["transaction_id"],
        timestamps_ms(frame),
        frame["card_id"],
        frame["terminal_id"],
        frame["amount"],
    )
    keys = [str(card).encode() for card in frame["card_id"].tolist()]
    producer = Producer(
        settings.librdkafka_config(
            **{
                "linger.ms": 5,
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
    )
    produce_all(producer, topic, payloads, keys)
    if producer.flush(60):
        raise RuntimeError("could not produce the benchmark input")
    return payloads


def produce_all(producer: Any, topic: str, payloads: list[bytes], keys: list[Any]) -> None:
    """Produce every payload with its key; when the local queue is full, serve it and retry."""
    for payload, key in zip(payloads, keys, strict=True):
        while True:
            try:
                producer.produce(topic, payload, key)
                break
            except BufferError:
                producer.poll(0.05)


def ceiling_producer(settings: Settings) -> Any:
    """A producer with the scorer's output settings, for the I/O ceiling's decisions."""
    from confluent_kafka import Producer

    from pipeline.scorer import ScorerConfig

    scorer = ScorerConfig()
    return Producer(
        settings.librdkafka_config(
            **{
                "linger.ms": scorer.linger_ms,
                "batch.size": 1_000_000,
                "compression.type": scorer.compression,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 500_000,
            }
        )
    )


def print_report(report: dict[str, Any], as_json: bool) -> None:
    """One JSON object, or one aligned ``key: value`` line per entry."""
    if as_json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>26}: {value}")


def count_messages(settings: Settings, topic: str, expected: int, timeout_s: float = 60.0) -> int:
    """Records readable (read_committed) on a topic, waiting up to ``timeout_s`` for ``expected``."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        settings.librdkafka_config(
            **{
                "group.id": unique("count"),
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            for message in consumer.consume(10000, 0.5):
                if message.error() is None:
                    seen += 1
    finally:
        consumer.close()
    return seen


def percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(np.max(values)), 2),
    }
