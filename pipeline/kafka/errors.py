"""Errors of the Kafka adapters."""

from __future__ import annotations

from pipeline.errors import FraudError


class KafkaAdapterError(FraudError):
    """Talking to the Kafka cluster failed."""


class KafkaUnavailableError(KafkaAdapterError):
    """The cluster did not answer (wrong bootstrap servers, or not running)."""


class TopicCreationError(KafkaAdapterError):
    """A topic could not be created (bad partition count or replication factor...)."""
