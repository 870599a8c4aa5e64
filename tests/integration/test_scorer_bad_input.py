"""Bad input never stops the scorer and is never dropped.

A stream mixes valid Avro and JSON transactions with every kind of garbage a
producer can send. Every valid record must be decided exactly once, every bad
one must land on the dead-letter topic with its original bytes and a reason,
the worker must go on deciding valid records sent after the garbage, and the
counts must reconcile, both in the worker's summary and on the topics.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
from confluent_kafka import Consumer, Producer, TopicPartition
from scorer_helpers import (
    BIG_MESSAGE_BYTES,
    Record,
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
from pipeline.registry import ModelRegistry
from pipeline.scorer import ScorerConfig, ScorerWorker
from pipeline.serde import (
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    Serde,
    frame_header,
)
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

SERDE = Serde.local()
CODEC = SERDE.transactions()
UNKNOWN_CARD = 9_000_000
TS = 1_525_000_000_000  # 2018-04-29, inside the simulated range


@dataclass(frozen=True)
class Input:
    """One record to produce, and what the scorer must do with it."""

    key: bytes | None
    value: bytes | None
    transaction_id: int | None  # set for valid records: they must be decided
    reason: str | None = None  # set for bad records: the expected dead-letter reason


def avro(tx: int, card: int, amount: float, terminal: int = 5, ts: int = TS) -> bytes:
    return CODEC.encode_columns([tx], [ts], [card], [terminal], [amount])[0]


def as_json(tx: int, card: int, amount: object, **extra: object) -> bytes:
    record = {"transaction_id": tx, "timestamp": TS, "card_id": card, "terminal_id": 3}
    record["amount"] = amount
    return json.dumps({**record, **extra}).encode()


def valid_stream(frame: pd.DataFrame, null_keys_every: int = 17) -> list[Input]:
    payloads = CODEC.encode_columns(
        frame["transaction_id"],
        timestamps_ms(frame),
        frame["card_id"],
        frame["terminal_id"],
        frame["amount"],
    )
    out = []
    for i, (tx, card, payload) in enumerate(
        zip(frame["transaction_id"].tolist(), frame["card_id"].tolist(), payloads, strict=True)
    ):
        key = None if i % null_keys_every == 0 else str(card).encode()
        out.append(Input(key, payload, int(tx)))
    return out


def garbage(first_id: int) -> list[Input]:
    """Every kind of bad record, plus valid edge cases (unknown cards, JSON, 1 MB JSON)."""
    rng = np.random.default_rng(5)
    good = avro(first_id, 1, 10.0)
    random_bytes = b"\xff" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    big_garbage = good + rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    big_json = as_json(first_id + 1, 12, 42.0, padding="x" * (1 << 20))
    k = b"12"
    return [
        Input(k, random_bytes, None, "bad_magic"),
        Input(None, b"{not json at all", None, "json_invalid"),
        Input(k, good[:3], None, "truncated"),
        Input(k, good[:9], None, "truncated"),
        Input(k, b"\x01" + good[1:], None, "bad_magic"),
        Input(None, frame_header(4242) + good[5:], None, "unknown_schema_id"),
        Input(k, frame_header(3) + good[5:], None, "wrong_schema"),  # Decision's id
        Input(k, json.dumps({"transaction_id": 1, "card_id": 12}).encode(), None, "missing_field"),
        Input(k, avro(first_id + 3, 12, float("nan")), None, "invalid_value"),
        Input(k, avro(first_id + 4, 12, -3.5), None, "invalid_value"),
        Input(k, avro(first_id + 5, 12, 1e12), None, "invalid_value"),
        Input(k, avro(first_id + 6, 12, float("inf")), None, "invalid_value"),
        Input(k, as_json(first_id + 7, 12, "12.50"), None, "wrong_type"),
        Input(k, big_garbage, None, "avro_decode"),
        Input(k, b"", None, "truncated"),
        Input(b"13", None, None, "truncated"),  # a tombstone: no value at all
        Input(None, b"", None, "truncated"),
        # Valid edge cases: decided, not dead-lettered.
        Input(
            str(UNKNOWN_CARD).encode(), avro(first_id + 8, UNKNOWN_CARD, 99.0, 10**9), first_id + 8
        ),
        Input(None, avro(first_id + 9, UNKNOWN_CARD + 1, 0.0), first_id + 9),
        Input(k, as_json(first_id + 10, 12, 17), first_id + 10),
        Input(None, big_json, first_id + 1),
    ]


def produce(settings: Settings, inputs: list[Input]) -> list[tuple[int, int]]:
    """Produce in order; returns each record's (partition, offset)."""
    producer = Producer(
        settings.librdkafka_config(
            **{
                "linger.ms": 5,
                "message.max.bytes": BIG_MESSAGE_BYTES,
                "partitioner": "murmur2_random",
            }
        )
    )
    where: list[tuple[int, int]] = [(-1, -1)] * len(inputs)
    errors: list[str] = []

    def delivered(index: int) -> Callable[..., None]:
        def callback(error: object, message: object) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                where[index] = (message.partition(), message.offset())  # type: ignore[attr-defined]

        return callback

    for index, item in enumerate(inputs):
        producer.produce(
            settings.topics.transactions, item.value, item.key, on_delivery=delivered(index)
        )
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    return where


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulated(days=14, seed=3)


@pytest.fixture(scope="module")
def booster(frame: pd.DataFrame) -> xgboost.Booster:
    return train_on(frame, day_index(frame) < 7)


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_bad_input_is_dead_lettered_and_valid_input_decided_once(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_id: str,
    tmp_path: Path,
    frame: pd.DataFrame,
    booster: xgboost.Booster,
    exactly_once: bool,
) -> None:
    topics = scorer_topics(topic_factory, big_messages=True)
    # The scorer's own clients must carry 1 MB records to the dead-letter topic.
    settings = scorer_settings(
        kafka_bootstrap,
        topics,
        tmp_path / "models",
        kafka_config={"message.max.bytes": str(BIG_MESSAGE_BYTES)},
    )
    register(ModelRegistry(settings.registry_dir), booster, frame, alias="champion")

    stream = frame[day_index(frame) >= 7].reset_index(drop=True)
    first = stream.iloc[:600]
    later = stream.iloc[600:900]
    odd = garbage(10_000_000)
    # Interleave: garbage spread through the first part of the valid stream.
    mixed: list[Input] = []
    valid_first = valid_stream(first)
    step = len(valid_first) // len(odd)
    for i, item in enumerate(odd):
        mixed.extend(valid_first[i * step : (i + 1) * step])
        mixed.append(item)
    mixed.extend(valid_first[len(odd) * step :])
    after = valid_stream(later)

    worker = ScorerWorker(
        settings,
        ScorerConfig(
            group_id=group_id, worker_id="bad-input", batch_size=97, exactly_once=exactly_once
        ),
    )
    try:
        where_mixed = produce(settings, mixed)
        summary = worker.run(max_events=len(mixed), idle_timeout_s=20)
        assert summary.decided + summary.dead_lettered == len(mixed), summary
        # Still alive after the garbage: valid input sent afterwards is decided too.
        where_after = produce(settings, after)
        summary = worker.run(max_events=len(mixed) + len(after), idle_timeout_s=20)
    finally:
        worker.close()
    inputs = mixed + after
    where = where_mixed + where_after

    valid = [item for item in inputs if item.transaction_id is not None]
    invalid = [(item, loc) for item, loc in zip(inputs, where, strict=True) if item.reason]
    assert len(valid) + len(invalid) == len(inputs)

    # The worker's own accounting.
    assert summary.consumed == len(inputs)
    assert summary.decided == len(valid)
    assert summary.dead_lettered == len(invalid)
    assert summary.consumed == summary.decided + summary.dead_lettered

    # The topics' accounting: in = decided + dead-lettered, each valid id exactly once.
    incoming = read_all(settings, topics.transactions)
    decision_records = read_all(settings, topics.decisions)
    dead = read_all(settings, topics.dlq)
    assert len(incoming) == len(inputs)
    assert len(incoming) == len(decision_records) + len(dead)
    decisions = decode_decisions(decision_records)
    assert len(decisions) == decisions["transaction_id"].nunique() == len(valid)
    assert set(decisions["transaction_id"]) == {item.transaction_id for item in valid}
    assert decisions["score"].between(0.0, 1.0).all()
    late_ids = set(later["transaction_id"])
    assert late_ids <= set(decisions["transaction_id"])
    unknown = decisions[decisions["card_id"] >= UNKNOWN_CARD]
    assert len(unknown) == 2 and unknown["action"].isin(["APPROVE", "REVIEW", "DECLINE"]).all()

    # Every bad record on the dead-letter topic: original bytes, key, reason, source.
    by_source: dict[tuple[int, int], Record] = {}
    for record in dead:
        assert record.header(DLQ_SOURCE_TOPIC) == topics.transactions
        assert record.header(DLQ_STAGE) == "decode"
        assert record.header(DLQ_ERROR_MESSAGE)
        source = (int(record.header(DLQ_SOURCE_PARTITION)), int(record.header(DLQ_SOURCE_OFFSET)))
        assert source not in by_source, f"dead-lettered twice: {source}"
        by_source[source] = record
    assert set(by_source) == {loc for _, loc in invalid}
    for item, loc in invalid:
        record = by_source[loc]
        assert (record.value or b"") == (item.value or b""), f"bytes changed for {item.reason}"
        assert record.key == item.key
        assert record.header(DLQ_ERROR_REASON) == item.reason
    assert Counter(r.header(DLQ_ERROR_REASON) for r in dead) == Counter(
        item.reason for item, _ in invalid
    )
    assert max(len(r.value or b"") for r in dead) > 1 << 20

    # Everything read is committed: a restarted worker would not decide it again.
    ends: dict[int, int] = {}
    for record in incoming:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group_id})
    try:
        committed = reader.committed(
            [TopicPartition(topics.transactions, p) for p in sorted(ends)], timeout=15
        )
    finally:
        reader.close()
    assert {tp.partition: tp.offset for tp in committed} == ends


def test_a_record_too_large_to_dead_letter_does_not_kill_the_worker(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_id: str,
    tmp_path: Path,
    frame: pd.DataFrame,
    booster: xgboost.Booster,
) -> None:
    """Default topic and client limits: the broker takes 1,048,588-byte records, librdkafka
    producers default to 1,000,000. A 1,040,000-byte record gets in; it must still be
    accounted for (dead-lettered, its bytes possibly cut) and the records after it decided."""
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    register(ModelRegistry(settings.registry_dir), booster, frame, alias="champion")
    valid = valid_stream(frame.iloc[:50])
    oversize = Input(b"7", b"\x00" * 1_040_000, None, "truncated")
    inputs = [*valid[:25], oversize, *valid[25:]]
    where = produce(settings, inputs)

    worker = ScorerWorker(settings, ScorerConfig(group_id=group_id, worker_id="oversize"))
    try:
        summary = worker.run(max_events=len(inputs), idle_timeout_s=20)
    finally:
        worker.close()
    assert (summary.decided, summary.dead_lettered) == (len(valid), 1)
    dead = read_all(settings, topics.dlq)
    assert len(dead) == 1
    assert dead[0].header("fraud.dlq.truncated_from") == "1040000"
    assert dead[0].value == b"\x00" * len(dead[0].value or b"")
    source = (int(dead[0].header(DLQ_SOURCE_PARTITION)), int(dead[0].header(DLQ_SOURCE_OFFSET)))
    assert source == where[len(valid) // 2]
