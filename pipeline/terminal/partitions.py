"""Consumers that own every partition of their topics: no group join, no rebalances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.terminal.errors import TerminalFeaturesError

_NEW_TOPIC_GRACE_S: Final = 5.0


def all_partitions(
    consumer: Consumer, topics: Sequence[str], timeout_s: float = 15.0
) -> list[TopicPartition]:
    """Every partition of ``topics``; a missing topic or a silent cluster raises.

    A topic created a moment ago may not be in the metadata yet, so a missing
    one is asked for again for up to ``_NEW_TOPIC_GRACE_S``.
    """
    found: list[TopicPartition] = []
    for topic in topics:
        deadline = time.monotonic() + _NEW_TOPIC_GRACE_S
        while True:
            partitions = _partitions(consumer, topic, timeout_s)
            if partitions or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not partitions:
            raise TerminalFeaturesError(f"topic {topic} does not exist; run `fraud topics create`")
        found.extend(TopicPartition(topic, p) for p in partitions)
    return found


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TerminalFeaturesError(
            f"Kafka did not answer within {timeout_s:.0f} s ({exc.args[0] if exc.args else exc}); "
            "start one with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return []
    return sorted(info.partitions)


def high_watermarks(
    consumer: Consumer, partitions: Sequence[TopicPartition], timeout_s: float = 15.0
) -> dict[tuple[str, int], int]:
    """The current end offset of each partition."""
    ends = {}
    for tp in partitions:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
        except KafkaException as exc:
            raise TerminalFeaturesError(
                f"cannot read the end offset of {tp.topic}[{tp.partition}]: {exc}"
            ) from exc
        ends[(tp.topic, tp.partition)] = int(high)
    return ends
