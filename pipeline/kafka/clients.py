"""Factories for confluent-kafka clients built from the one settings object.

Overrides are librdkafka property names (``linger.ms``), passed as a mapping:
``make_producer(settings, **{"linger.ms": 5})``.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from pipeline.settings import Settings

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    # Java's partitioner: records keyed by card land on the same partition
    # whichever client (librdkafka, Java, aiokafka) produced them, so the
    # transactions and labels topics stay co-partitioned.
    "partitioner": "murmur2_random",
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all, lz4, 5 ms linger) unless overridden."""
    return Producer(settings.librdkafka_config(**{**PRODUCER_DEFAULTS, **overrides}))


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in ``group_id`` reading from the earliest offset, committing explicitly."""
    config = {**CONSUMER_DEFAULTS, "group.id": group_id, **overrides}
    return Consumer(settings.librdkafka_config(**config))


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    """An admin client for topic management and metadata."""
    return AdminClient(settings.librdkafka_config(**overrides))
