"""Shared fixtures: one real Kafka broker per test session, uuid-named topics and groups.

The broker is chosen by :func:`pipeline.localkafka.selection.choose_broker`:
``KAFKA_BOOTSTRAP_SERVERS`` / ``FRAUD_KAFKA_BOOTSTRAP_SERVERS`` if set, a
testcontainers Kafka if a Docker engine answers, else a local Apache Kafka
started from Maven Central jars on free ports in a temporary directory. It is
started only when a test asks for it, so ``pytest tests/unit`` needs none.
Integration tests never skip: without a broker they fail and say why.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from pipeline.errors import FraudError
from pipeline.settings import Settings, load_settings

KAFKA_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.1"  # KRaft-capable image testcontainers knows


_BROKER_USED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real broker the integration tests ran against, and how they fared."""
    outcomes = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "xpassed": 0}
    for outcome in outcomes:
        for report in terminalreporter.stats.get(outcome, []):
            if "integration" in getattr(report, "keywords", {}) and report.when in (
                "call",
                "setup",
            ):
                if outcome != "skipped" and report.when == "setup":
                    continue
                outcomes[outcome] += 1
    if not any(outcomes.values()):
        return
    where = _BROKER_USED.get("bootstrap", "no broker started")
    source = _BROKER_USED.get("source", "none")
    counts = ", ".join(f"{count} {name}" for name, count in outcomes.items() if count)
    terminalreporter.write_line(f"integration tests: {counts}; broker: {source}, {where}")


def _no_broker(reason: str) -> None:
    where = "in CI" if os.environ.get("CI") else "locally"
    pytest.fail(
        f"no Kafka broker for the integration tests ({where}): {reason}. "
        "Set KAFKA_BOOTSTRAP_SERVERS, or install Java 17+ and Maven for the local broker.",
        pytrace=False,
    )


def _wait_for_metadata(bootstrap: str, timeout_s: float) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        _no_broker(f"{bootstrap} did not answer a metadata request in {timeout_s:.0f} s ({exc})")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker (configured, container or local)."""
    from pipeline.localkafka.selection import BrokerSource, choose_broker, docker_engine_answers

    choice = choose_broker(os.environ, docker_engine_answers)
    _BROKER_USED["source"] = choice.source.name.lower()
    if choice.source is BrokerSource.CONFIGURED:
        assert choice.bootstrap_servers is not None
        _wait_for_metadata(choice.bootstrap_servers, 15.0)
        _BROKER_USED["bootstrap"] = choice.bootstrap_servers
        yield choice.bootstrap_servers
    elif choice.source is BrokerSource.CONTAINER:
        yield from _container_broker()
    else:
        yield from _local_broker(tmp_path_factory)


def _container_broker() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    try:
        container = KafkaContainer(KAFKA_CONTAINER_IMAGE).with_kraft().start()
    except Exception as exc:  # any Docker failure is a reason to report, not a crash
        _no_broker(f"a Docker engine answers but the Kafka container failed: {exc}")
    try:
        _BROKER_USED["bootstrap"] = container.get_bootstrap_server()
        yield container.get_bootstrap_server()
    finally:
        container.stop()


def _local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from pipeline.localkafka import ClusterSpec, LocalCluster, find_free_port_block

    try:
        settings = load_settings()
        spec = ClusterSpec(
            cache_dir=settings.cache_dir,  # jars are shared with `fraud kafka up`
            run_root=tmp_path_factory.mktemp("kafka"),
            name="tests",
            brokers=1,
            base_port=find_free_port_block(2),
        )
        cluster = LocalCluster(spec)
        cluster.up(timeout_s=120)
    except FraudError as exc:
        _no_broker(f"the local broker could not start: {exc}")
    try:
        _BROKER_USED["bootstrap"] = f"{cluster.bootstrap_servers} (Apache Kafka, local KRaft)"
        yield cluster.bootstrap_servers
    finally:
        # Clients caught in reference cycles would otherwise outlive the broker
        # and log connection failures at interpreter exit.
        gc.collect()
        cluster.down()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> Settings:
    """Settings pointing at the session's broker."""
    return load_settings(kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create uuid-named topics on the broker; all are deleted after the test.

    ``topic_factory(partitions=3, config={"cleanup.policy": "compact"})`` returns the name.
    """
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def create(
        prefix: str = "test",
        partitions: int = 1,
        replication_factor: int = 1,
        config: dict[str, str] | None = None,
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=config or {},
        )
        admin.create_topics([topic])[name].result(timeout=30)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best-effort cleanup of uuid-named topics
                future.result(30)


@pytest.fixture
def unique_topic(topic_factory: Callable[..., str]) -> str:
    """One fresh single-partition topic."""
    return topic_factory()


@pytest.fixture
def group_id() -> str:
    """A fresh consumer group id."""
    return f"test-group-{uuid.uuid4().hex[:12]}"
