"""Thin Kafka adapters: client factories and topic administration."""

from pipeline.kafka.admin import TopicOutcome, TopicResult, TopicSpec, create_topics, topic_specs
from pipeline.kafka.clients import make_admin, make_consumer, make_producer
from pipeline.kafka.errors import KafkaAdapterError, KafkaUnavailableError, TopicCreationError

__all__ = [
    "KafkaAdapterError",
    "KafkaUnavailableError",
    "TopicCreationError",
    "TopicOutcome",
    "TopicResult",
    "TopicSpec",
    "create_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "topic_specs",
]
