"""Read card-state changelog partitions to their end and rebuild the stores."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from pipeline.errors import FraudError
from pipeline.kafka import make_consumer
from pipeline.scorer.changelog import StateRestorer
from pipeline.settings import Settings


class RestoreError(FraudError):
    """The changelog could not be read to its end."""


def restore_state(
    settings: Settings, topic: str, partitions: list[int], timeout_s: float = 120.0
) -> dict[int, StateRestorer]:
    """Per partition, the changelog read to its last committed record."""
    if not partitions:
        return {}
    consumer = make_consumer(
        settings,
        f"fraud-restore-{uuid.uuid4().hex[:12]}",
        **{
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 52_428_800,
            # At a partition's end the broker holds a fetch this long before it
            # answers (and the end is signalled): 500 ms by default.
            "fetch.wait.max.ms": 10,
        },
    )
    restorers = {partition: StateRestorer() for partition in partitions}
    pending = set(partitions)
    try:
        # With the partitions' leaders already known, the first offset lookup
        # goes out at once; assigned before, it waited for a 500 ms retry timer.
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"restoring card state from {topic} partitions {sorted(pending)} "
                    f"took over {timeout_s:.0f}s"
                )
            for message in consumer.consume(10_000, 0.05):
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise RestoreError(
                            f"changelog topic {topic} is missing; run `fraud topics create`"
                        )
                    continue
                restorers[partition].add(message.key(), message.value())
    finally:
        consumer.close()
    return restorers
