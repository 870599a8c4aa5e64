"""The scorer's rewind after an aborted transaction, on a real consumer group.

An abortable commit failure (ILLEGAL_GENERATION is common while the group
rebalances) makes the worker seek its partitions back to their committed
offsets. A partition assigned moments before cannot be sought yet; the rewind
must leave it alone rather than end the worker, and must still take every
partition it read from back to where the group committed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from pipeline.scorer.worker import seek_consumed
from pipeline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PARTITIONS = 4
PER_PARTITION = 100
READ = (0, 1)
"""Partitions that hold records; the others stay empty, so nothing is ever read from them."""
COMMITTED_P0 = 5


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        settings.librdkafka_config(
            **{
                "group.id": group,
                "group.instance.id": "rewind-1",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
    )


def _read_all(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        got += [m for m in consumer.consume(500, 0.2) if m.error() is None]
    return got


def test_a_rewind_seeks_what_was_read_and_leaves_partitions_just_assigned(
    kafka_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("rewind", partitions=PARTITIONS)
    producer = Producer(kafka_settings.librdkafka_config())
    for partition in READ:
        for i in range(PER_PARTITION):
            producer.produce(topic, f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    group = f"rewind-{uuid.uuid4().hex[:8]}"
    committer = _consumer(kafka_settings, group)
    committer.commit(offsets=[TopicPartition(topic, 0, COMMITTED_P0)], asynchronous=False)
    committer.close()

    consumer = _consumer(kafka_settings, group)
    in_callback: dict[str, object] = {}

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        # These partitions are not being fetched yet: a plain seek raises here.
        try:
            c.seek(TopicPartition(topic, partitions[0].partition, 0))
        except KafkaException as exc:
            in_callback["plain seek"] = exc
        committed = c.committed(partitions, timeout=10)
        try:
            in_callback["sought"] = seek_consumed(c, committed)
        except KafkaException as exc:  # reported below, not lost in the callback
            in_callback["error"] = exc

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        expected = 2 * PER_PARTITION - COMMITTED_P0
        first = _read_all(consumer, expected)
        assert "plain seek" in in_callback, "a plain seek worked: the premise changed"
        assert "error" not in in_callback, in_callback
        assert in_callback["sought"] == []
        assert len(first) == expected
        assert min(m.offset() for m in first if m.partition() == 0) == COMMITTED_P0

        assignment = consumer.assignment()
        assert sorted(tp.partition for tp in assignment) == list(range(PARTITIONS))
        sought = seek_consumed(consumer, consumer.committed(assignment, timeout=10))
        assert sorted(sought) == list(READ)

        again = _read_all(consumer, expected)
        assert sorted((m.partition(), m.offset()) for m in again) == sorted(
            (m.partition(), m.offset()) for m in first
        )
    finally:
        consumer.close()
