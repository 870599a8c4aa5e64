"""The pipeline's topics: what they look like, and creating them idempotently.

High-volume topics are co-partitioned by ``card_id`` and share one partition
count, so a scorer instance sees a card's transactions, labels and state
changelog on the same partition number. Small control topics have one
partition (total order); tables read whole are compacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.kafka.clients import make_admin
from pipeline.kafka.errors import KafkaUnavailableError, TopicCreationError
from pipeline.settings import Settings, TopicNames

# TopicNames fields of the co-partitioned, high-volume topics.
CO_PARTITIONED = (
    "transactions",
    "decisions",
    "alerts",
    "labels",
    "dlq",
    "outcomes",
    "card_state_changelog",
)
# TopicNames fields of topics read as tables: only the latest value per key matters.
CHANGELOG_RETENTION_MS = 40 * 86_400_000
COMPACTED = ("model_control", "terminal_features", "card_state_changelog")


@dataclass(frozen=True)
class TopicSpec:
    """Name, partitions, replication factor and topic-level configs of one topic."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    def new_topic(self) -> NewTopic:
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            config=dict(self.config),
        )


class TopicOutcome(Enum):
    CREATED = "created"
    EXISTS = "exists"


@dataclass(frozen=True)
class TopicResult:
    """What happened to one topic; ``actual_partitions`` is known for existing ones."""

    spec: TopicSpec
    outcome: TopicOutcome
    actual_partitions: int | None = None

    @property
    def partitions_differ(self) -> bool:
        return self.actual_partitions is not None and self.actual_partitions != self.spec.partitions


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of the design, sized from ``settings``, in TopicNames order."""
    replication = settings.replication_factor
    specs = []
    for field_name in TopicNames.model_fields:
        config: dict[str, str] = {}
        if field_name in COMPACTED:
            config["cleanup.policy"] = "compact"
        if field_name == "card_state_changelog":
            # Frames of state rows keyed by input offset range (equal keys, equal
            # contents); rows older than the longest card window are useless,
            # so they are deleted by age.
            config["cleanup.policy"] = "compact,delete"
            config["retention.ms"] = str(CHANGELOG_RETENTION_MS)
        if replication >= 3:
            config["min.insync.replicas"] = "2"
        partitions = settings.partitions if field_name in CO_PARTITIONED else 1
        name = getattr(settings.topics, field_name)
        specs.append(TopicSpec(name, partitions, replication, config))
    return specs


def create_topics(
    settings: Settings, *, timeout_s: float = 30.0, admin: AdminClient | None = None
) -> list[TopicResult]:
    """Create every missing topic; existing ones are reported, never changed."""
    admin = admin or make_admin(settings, log_level=0)  # failures surface as exceptions
    existing = _existing_topics(admin, settings, timeout_s)
    specs = topic_specs(settings)
    results: dict[str, TopicResult] = {}
    missing = []
    for spec in specs:
        if spec.name in existing:
            actual = len(existing[spec.name].partitions)
            results[spec.name] = TopicResult(spec, TopicOutcome.EXISTS, actual)
        else:
            missing.append(spec)
    if missing:
        futures = admin.create_topics(
            [spec.new_topic() for spec in missing], operation_timeout=timeout_s
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout=timeout_s)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    results[spec.name] = TopicResult(spec, TopicOutcome.EXISTS)
                    continue
                raise TopicCreationError(_creation_message(spec, error, exc)) from exc
            results[spec.name] = TopicResult(spec, TopicOutcome.CREATED)
    return [results[spec.name] for spec in specs]


def _existing_topics(admin: AdminClient, settings: Settings, timeout_s: float) -> dict[str, Any]:
    try:
        return dict(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not answer within {timeout_s:.0f} s; "
            "start one with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc


def _creation_message(spec: TopicSpec, error: object, exc: Exception) -> str:
    reason = error.str() if isinstance(error, KafkaError) else str(exc)
    hint = ""
    if isinstance(error, KafkaError) and error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
        hint = "; lower --replication-factor to at most the number of brokers"
    return f"cannot create topic {spec.name!r}: {reason}{hint}"
