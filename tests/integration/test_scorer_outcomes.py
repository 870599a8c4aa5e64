"""The scorer joins delayed labels to its decisions and emits one Outcome each.

Transactions of two simulated weeks are decided; the labels of the first
days arrive on the labels topic (keyed by card, in label-time order, one in
JSON), mixed with labels the join must refuse: one for a transaction never
seen, a second label for an already labelled transaction, and bytes that are
not a label. Every good label must give exactly one outcome carrying the
decision's score, action and model, and the label's verdict and time; every
refused one must reach the dead-letter topic with its bytes and a reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from confluent_kafka import Producer
from scorer_helpers import (
    WorkerThread,
    day_index,
    decode_decisions,
    read_all,
    register,
    scorer_settings,
    scorer_topics,
    simulated,
    train_on,
)

from pipeline.data.io import timestamps_ms
from pipeline.features.spec import DAY_MS
from pipeline.registry import ModelRegistry
from pipeline.scorer import ScorerConfig, ScorerWorker
from pipeline.serde import DLQ_ERROR_REASON, DLQ_SOURCE_TOPIC, DLQ_STAGE, Serde
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

SERDE = Serde.local()
UNKNOWN_TRANSACTION = 987_654_321


def _producer(settings: Settings) -> Producer:
    return Producer(settings.librdkafka_config(**{"linger.ms": 5, "partitioner": "murmur2_random"}))


def _send(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = _producer(settings)
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _champion_and_stream(
    settings: Settings, *, days: int, seed: int
) -> tuple[pd.DataFrame, npt.NDArray[np.int64]]:
    """Simulate, register a champion trained on the first week, and send the
    transactions of the days after it; returns them and their day numbers."""
    frame = simulated(days=days, seed=seed)
    day = day_index(frame)
    register(
        ModelRegistry(settings.registry_dir), train_on(frame, day < 7), frame, alias="champion"
    )
    stream = frame[day >= 7].reset_index(drop=True)
    payloads = SERDE.transactions().encode_columns(
        stream["transaction_id"],
        timestamps_ms(stream),
        stream["card_id"],
        stream["terminal_id"],
        stream["amount"],
    )
    keys = [str(card).encode() for card in stream["card_id"]]
    _send(settings, settings.topics.transactions, list(zip(keys, payloads, strict=True)))
    return stream, day[day >= 7]


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_each_label_gives_one_outcome_and_bad_labels_are_dead_lettered(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_id: str,
    tmp_path: Path,
    exactly_once: bool,
) -> None:
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    stream, stream_days = _champion_and_stream(settings, days=17, seed=5)
    label_codec = SERDE.codec("Label")

    # Labels of the first two streamed days, known 7 days later, in label-time order
    # (the stream goes on a day longer, so every partition's event time passes them).
    labelled = stream[stream_days < 9].copy()
    labelled["label_timestamp"] = timestamps_ms(labelled) + 7 * DAY_MS
    labelled = labelled.sort_values("label_timestamp", kind="stable").reset_index(drop=True)
    records: list[tuple[bytes, bytes]] = []
    for i, row in enumerate(labelled.itertuples(index=False)):
        label = {
            "transaction_id": int(row.transaction_id),
            "card_id": int(row.card_id),
            "is_fraud": bool(row.is_fraud),
            "label_timestamp": int(row.label_timestamp),
            "source": "simulator",
            "fraud_scenario": int(row.fraud_scenario) or None,
        }
        value = json.dumps(label).encode() if i == 5 else label_codec.encode(label)
        records.append((str(row.card_id).encode(), value))
    first = labelled.iloc[0]
    key = str(first["card_id"]).encode()
    first_ms = int(first["label_timestamp"])
    unknown = {
        "transaction_id": UNKNOWN_TRANSACTION,
        "card_id": int(first["card_id"]),
        "is_fraud": False,
        "label_timestamp": first_ms + 1,
        "source": "analyst",
        "fraud_scenario": None,
    }
    duplicate = {
        "transaction_id": int(first["transaction_id"]),
        "card_id": int(first["card_id"]),
        "is_fraud": True,
        "label_timestamp": first_ms + 2,
        "source": "analyst",
        "fraud_scenario": None,
    }
    bad = [
        (key, label_codec.encode(unknown)),
        (key, label_codec.encode(duplicate)),
        (key, b"\x00\x00\x00\x00\x05garbage"),
    ]
    records[10:10] = bad
    _send(settings, topics.labels, records)

    worker = ScorerWorker(
        settings,
        ScorerConfig(
            group_id=group_id, worker_id="outcomes", batch_size=500, exactly_once=exactly_once
        ),
    )
    summary = worker.summary
    with WorkerThread(worker) as running:
        running.wait_decided(len(stream), timeout_s=60)
        running.wait_for(lambda: summary.outcomes >= len(labelled), f"{len(labelled)} outcomes", 60)
    assert summary.outcomes == len(labelled)

    decisions = decode_decisions(read_all(settings, topics.decisions)).set_index("transaction_id")
    outcome_codec = SERDE.codec("Outcome")
    outcome_records = read_all(settings, topics.outcomes)
    outcomes = pd.DataFrame([outcome_codec.decode(r.value or b"") for r in outcome_records])
    assert {r.key for r in outcome_records} == {b"fraud"}
    assert len(outcomes) == outcomes["transaction_id"].nunique() == len(labelled)
    outcomes = outcomes.set_index("transaction_id").sort_index()
    expected = labelled.set_index("transaction_id").sort_index()
    assert (outcomes.index == expected.index).all()
    assert (outcomes["is_fraud"].to_numpy() == expected["is_fraud"].astype(bool).to_numpy()).all()
    assert (outcomes["label_timestamp"] == expected["label_timestamp"]).all()
    assert (outcomes["card_id"] == expected["card_id"]).all()
    assert (outcomes["timestamp"] == timestamps_ms(expected)).all()
    joined = decisions.loc[outcomes.index]
    assert np.array_equal(outcomes["score"].to_numpy(), joined["score"].to_numpy())
    assert (outcomes["action"] == joined["action"]).all()
    assert (outcomes["decided_at"] == joined["decided_at"]).all()
    assert (outcomes["model_version"] == joined["model_version"]).all()
    assert (outcomes["rollout_arm"] == "champion").all()
    assert outcomes["challenger_version"].isna().all()

    dead = read_all(settings, topics.dlq)
    assert all(r.header(DLQ_SOURCE_TOPIC) == topics.labels for r in dead)
    assert all(r.header(DLQ_STAGE) == "join" for r in dead)
    assert sorted((r.header(DLQ_ERROR_REASON), r.value) for r in dead) == sorted(
        [
            ("unknown_transaction", bad[0][1]),
            ("unknown_transaction", bad[1][1]),
            ("truncated", bad[2][1]),
        ]
    )


def test_a_restarted_worker_joins_labels_of_decisions_made_before_it_started(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_id: str,
    tmp_path: Path,
) -> None:
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    stream, stream_days = _champion_and_stream(settings, days=12, seed=6)
    label_codec = SERDE.codec("Label")
    config = ScorerConfig(group_id=group_id, worker_id="restarted", batch_size=300)
    first = ScorerWorker(settings, config)
    try:
        first.run(max_events=len(stream), idle_timeout_s=30)
    finally:
        first.close()
    assert first.summary.decided == len(stream) and first.summary.outcomes == 0

    # Labels of the first day, all due before the end of the stream.
    labelled = stream[stream_days < 8].copy()
    labelled["label_timestamp"] = timestamps_ms(labelled) + 3 * DAY_MS
    labelled = labelled.sort_values("label_timestamp", kind="stable")
    _send(
        settings,
        topics.labels,
        [
            (
                str(row.card_id).encode(),
                label_codec.encode(
                    {
                        "transaction_id": int(row.transaction_id),
                        "card_id": int(row.card_id),
                        "is_fraud": bool(row.is_fraud),
                        "label_timestamp": int(row.label_timestamp),
                        "source": "simulator",
                        "fraud_scenario": None,
                    }
                ),
            )
            for row in labelled.itertuples(index=False)
        ],
    )
    second = ScorerWorker(settings, config)
    summary = second.summary
    with WorkerThread(second) as running:
        running.wait_for(lambda: summary.outcomes >= len(labelled), "outcomes", 60)
    assert summary.decided == 0 and summary.outcomes == len(labelled)
    outcome_codec = SERDE.codec("Outcome")
    outcomes = pd.DataFrame(
        [outcome_codec.decode(r.value or b"") for r in read_all(settings, topics.outcomes)]
    ).set_index("transaction_id")
    decisions = decode_decisions(read_all(settings, topics.decisions)).set_index("transaction_id")
    assert sorted(outcomes.index) == sorted(labelled["transaction_id"])
    joined = decisions.loc[outcomes.index]
    assert np.array_equal(outcomes["score"].to_numpy(), joined["score"].to_numpy())
    assert (outcomes["decided_at"] == joined["decided_at"]).all()
    assert (outcomes["action"] == joined["action"]).all()
    assert read_all(settings, topics.dlq) == []
