"""Replay against a real broker: everything arrives, decoded, keyed and in order per card."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.kafka import make_consumer
from pipeline.replay import replay
from pipeline.serde import Serde
from pipeline.settings import Settings, TopicNames, load_settings

pytestmark = pytest.mark.integration

SERDE = Serde.local()
DAY_MS = 86_400_000


def transactions(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, 3 * DAY_MS, n))
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64) + 1_000,
            "timestamp": (np.datetime64("2018-04-01", "ms") + offsets).astype("datetime64[ns]"),
            "card_id": rng.integers(0, 40, n).astype(np.int64),
            "terminal_id": rng.integers(0, 500, n).astype(np.int64),
            "amount": np.round(rng.uniform(1, 400, n), 2),
            "is_fraud": (rng.random(n) < 0.1).astype(np.int8),
            "fraud_scenario": np.zeros(n, np.int8),
        }
    )


def read_back(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes, bytes, int]]:
    """(partition, key, value, kafka timestamp) of ``count`` messages, per partition in order."""
    consumer: Consumer = make_consumer(settings, f"replay-test-{topic}")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[int, bytes, bytes, int]] = []
    try:
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                out.append(
                    (message.partition(), message.key(), message.value(), message.timestamp()[1])
                )
    finally:
        consumer.close()
    return out


def test_replay_sends_transactions_and_delayed_labels(
    kafka_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    tx_topic, label_topic = topic_factory("tx", partitions=3), topic_factory("labels", partitions=3)
    settings = load_settings(
        kafka_bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        topics=TopicNames(transactions=tx_topic, labels=label_topic),
    )
    frame = transactions(500)
    before_ms = time.time() * 1000
    summary = replay(settings, frame, labels=True, label_delay_days=1)
    assert summary.ok and (summary.transactions, summary.labels) == (500, 500)

    sent = read_back(settings, tx_topic, 500)
    assert len(sent) == 500
    by_id = frame.set_index("transaction_id")
    per_card: dict[int, list[tuple[int, int]]] = defaultdict(list)  # card -> (partition, time)
    for partition, key, value, kafka_ms in sent:
        record = SERDE.transactions().decode(value)
        row = by_id.loc[record["transaction_id"]]
        assert key == str(row["card_id"]).encode()
        assert record["card_id"] == row["card_id"] and record["amount"] == row["amount"]
        assert record["timestamp"] == pd.Timestamp(row["timestamp"]).value // 1_000_000
        assert kafka_ms >= before_ms - 1000  # message time is the send time, not event time
        per_card[record["card_id"]].append((partition, record["timestamp"]))
    for events in per_card.values():
        assert len({partition for partition, _ in events}) == 1  # one card, one partition
        stamps = [stamp for _, stamp in events]
        assert stamps == sorted(stamps)  # and in event order
    assert sum(map(len, per_card.values())) == 500

    labels = [
        SERDE.codec("Label").decode(value)
        for _, _, value, _ in read_back(settings, label_topic, 500)
    ]
    assert sorted(label["transaction_id"] for label in labels) == sorted(frame["transaction_id"])
    for label in labels:
        row = by_id.loc[label["transaction_id"]]
        assert label["is_fraud"] == bool(row["is_fraud"])
        assert (
            label["label_timestamp"] == pd.Timestamp(row["timestamp"]).value // 1_000_000 + DAY_MS
        )


def test_paced_replay_takes_the_scaled_event_time(
    kafka_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("tx-paced")
    settings = load_settings(
        kafka_bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        topics=TopicNames(transactions=topic),
    )
    frame = transactions(30)
    span_s = (frame["timestamp"].iloc[-1] - frame["timestamp"].iloc[0]).total_seconds()
    speed = span_s / 1.0  # the whole frame in one second
    summary = replay(settings, frame, speed=speed, fmt="json")
    assert summary.ok and summary.transactions == 30
    assert 0.9 <= summary.seconds < 5.0
    values = [value for _, _, value, _ in read_back(settings, topic, 30)]
    assert {SERDE.transactions().decode(v)["transaction_id"] for v in values} == set(
        frame["transaction_id"]
    )


def test_replay_cli_sends_a_file_and_reports(
    kafka_settings: Settings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("tx-cli")
    path = tmp_path / "tx.csv"
    transactions(80).to_csv(path, index=False)
    env = {
        **os.environ,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "FRAUD_TOPICS__TRANSACTIONS": topic,
    }
    run = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "replay", "--data", str(path), "--limit", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "sent 50 transactions and 0 labels" in run.stdout
    assert len(read_back(kafka_settings, topic, 50)) == 50

    missing = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "replay", "--data", str(path), "--labels"],
        env={**env, "FRAUD_TOPICS__LABELS": "no-such-topic-here"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "no-such-topic-here" in missing.stderr and "Traceback" not in missing.stderr


# Runs the `fraud` entry point with the command registered even before the CLI table lists it.
RUN_CLI = (
    "import sys; from pipeline.cli import COMMANDS, main; "
    "COMMANDS.setdefault('replay', ('pipeline.cli.replay', 'replay', '')); "
    "COMMANDS.setdefault('alerts', ('pipeline.cli.alerts', 'alerts', '')); "
    "main(sys.argv[1:])"
)
