"""Against a real broker: a produce/consume round trip, topic creation, the kafka CLI."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline.cli import cli
from pipeline.kafka import make_consumer, make_producer
from pipeline.kafka.admin import CO_PARTITIONED, COMPACTED
from pipeline.localkafka import find_free_port_block, port_is_free
from pipeline.localkafka.jars import ensure_jars
from pipeline.settings import Settings, TopicNames, load_settings

pytestmark = pytest.mark.integration


def consume_all(
    settings: Settings, topic: str, group_id: str, count: int
) -> list[tuple[bytes, bytes]]:
    consumer = make_consumer(settings, group_id)
    consumer.subscribe([topic])
    records: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=count, timeout=0.5):
                assert message.error() is None, message.error()
                records.append((message.key(), message.value()))
            if len(records) >= count:
                break
    finally:
        consumer.close()
    return records


def test_produce_consume_round_trip(
    kafka_settings: Settings, topic_factory: Callable[..., str], group_id: str
) -> None:
    topic = topic_factory(partitions=3)
    producer = make_producer(kafka_settings)
    sent = [(f"card-{i % 7}".encode(), f"tx-{i}".encode()) for i in range(200)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    received = consume_all(kafka_settings, topic, group_id, len(sent))

    assert sorted(received) == sorted(sent)
    # Per key, order is kept (one key, one partition).
    for key in {key for key, _ in sent}:
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


def _uuid_topic_env(prefix: str) -> dict[str, str]:
    return {
        f"FRAUD_TOPICS__{field.upper()}": f"{prefix}-{field.replace('_', '-')}"
        for field in TopicNames.model_fields
    }


def test_topics_create_is_idempotent(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {"FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **_uuid_topic_env(prefix)}
    runner = CliRunner(env=env)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = {field: env[f"FRAUD_TOPICS__{field.upper()}"] for field in TopicNames.model_fields}
    try:
        first = runner.invoke(cli, ["topics", "create", "--partitions", "3"])
        assert first.exit_code == 0, first.output
        assert first.output.count("created") >= len(names)

        second = runner.invoke(cli, ["topics", "create", "--partitions", "3"])
        assert second.exit_code == 0, second.output
        assert "0 created, 12 already existed" in second.output

        metadata = admin.list_topics(timeout=15)
        for field, name in names.items():
            expected = 3 if field in CO_PARTITIONED else 1
            assert len(metadata.topics[name].partitions) == expected, name

        resources = [ConfigResource("topic", name) for name in names.values()]
        for resource, future in admin.describe_configs(resources).items():
            policy = future.result(timeout=15)["cleanup.policy"].value
            field = next(f for f, n in names.items() if n == resource.name)
            if field == "card_state_changelog":
                assert policy == "compact,delete", resource.name
            else:
                assert policy == ("compact" if field in COMPACTED else "delete"), resource.name

        listed = runner.invoke(cli, ["topics", "list"])
        assert listed.exit_code == 0
        assert f"{names['transactions']}\t3" in listed.output
    finally:
        for future in admin.delete_topics(list(names.values()), operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def test_kafka_cli_up_status_down(tmp_path: Path) -> None:
    """`fraud kafka up|status|down` on free ports, with the jars of the user's cache."""
    shared_jars = ensure_jars(
        load_settings().cache_dir / "kafka-4.1.1" / "libs", kafka_version="4.1.1"
    )
    (tmp_path / "kafka-4.1.1").mkdir()
    (tmp_path / "kafka-4.1.1" / "libs").symlink_to(shared_jars)
    base = find_free_port_block(2)
    env: dict[str, str | None] = {
        "FRAUD_CACHE_DIR": str(tmp_path),
        "FRAUD_LOCAL_KAFKA_PORT": str(base),
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": None,
    }
    runner = CliRunner(env=env)
    try:
        started = runner.invoke(cli, ["kafka", "up", "--timeout", "120"])
        assert started.exit_code == 0, started.output
        assert f"127.0.0.1:{base}" in started.output

        status = runner.invoke(cli, ["kafka", "status"])
        assert status.exit_code == 0, status.output
        assert "answering, 1 broker(s) live" in status.output
    finally:
        stopped = runner.invoke(cli, ["kafka", "down"])
    assert stopped.exit_code == 0, stopped.output
    assert not (tmp_path / "run" / "local" / "node-1" / "kafka.pid").exists()
    assert port_is_free(base) and port_is_free(base + 1)
    after = runner.invoke(cli, ["kafka", "status"])
    assert after.exit_code != 0
    assert "stopped" in after.output
