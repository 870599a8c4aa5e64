"""``fraud topics create|list``: the pipeline's topics on the configured cluster."""

from __future__ import annotations

import click

from pipeline.kafka.errors import KafkaUnavailableError
from pipeline.settings import load_settings


@click.group()
def topics() -> None:
    """Create and list the pipeline's Kafka topics.

    The cluster comes from FRAUD_KAFKA_BOOTSTRAP_SERVERS (default
    127.0.0.1:9092); topic names from FRAUD_TOPICS__<NAME>.

    \b
    Examples:
      fraud topics create
      fraud topics create --partitions 12 --replication-factor 3
      fraud topics list
    """


@topics.command()
@click.option(
    "--partitions",
    type=click.IntRange(1, 1000),
    default=None,
    help="Partitions of the high-volume, card-keyed topics (default FRAUD_PARTITIONS or 6).",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(1, 10),
    default=None,
    help="Replicas per partition (default FRAUD_REPLICATION_FACTOR or 1); "
    "3 or more also sets min.insync.replicas=2.",
)
def create(partitions: int | None, replication_factor: int | None) -> None:
    """Create every topic the pipeline uses; existing ones are left as they are.

    Card-keyed topics (transactions, decisions, alerts, labels, DLQ, outcomes,
    card state changelog) get --partitions partitions so they stay
    co-partitioned; control topics get one; model-control, terminal-features
    and the card state changelog are compacted. Safe to run again.

    \b
    Example:
      fraud topics create --partitions 6
    """
    from pipeline.kafka.admin import TopicOutcome, create_topics

    settings = load_settings(partitions=partitions, replication_factor=replication_factor)
    results = create_topics(settings)
    for result in results:
        spec = result.spec
        extras = ", ".join(f"{key}={value}" for key, value in spec.config.items())
        line = f"{result.outcome.value:8} {spec.name} ({spec.partitions} partition(s)"
        line += f", rf {spec.replication_factor}" + (f", {extras})" if extras else ")")
        if result.partitions_differ:
            line += f"  note: has {result.actual_partitions} partitions"
        click.echo(line)
    created = sum(result.outcome is TopicOutcome.CREATED for result in results)
    click.echo(
        f"{created} created, {len(results) - created} already existed "
        f"on {settings.kafka_bootstrap_servers}",
        err=True,
    )


@topics.command(name="list")
@click.option(
    "--all", "show_all", is_flag=True, help="Include internal topics (__consumer_offsets...)."
)
def list_topics(show_all: bool) -> None:
    """List the topics on the cluster with their partition counts.

    \b
    Example:
      fraud topics list
    """
    from confluent_kafka import KafkaException

    from pipeline.kafka.clients import make_admin

    settings = load_settings()
    try:
        metadata = make_admin(settings, log_level=0).list_topics(timeout=15)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not answer; "
            "start one with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    for name in sorted(metadata.topics):
        if name.startswith("__") and not show_all:
            continue
        click.echo(f"{name}\t{len(metadata.topics[name].partitions)}")
