"""A three-node local cluster keeps every acknowledged record while one broker is down."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.localkafka import ClusterSpec, LocalCluster, find_free_port_block
from pipeline.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

RECORDS = 2000


@pytest.fixture
def three_brokers(tmp_path: Path) -> Iterator[LocalCluster]:
    spec = ClusterSpec(
        cache_dir=load_settings().cache_dir,
        run_root=tmp_path,
        name="three",
        brokers=3,
        base_port=find_free_port_block(6),
    )
    cluster = LocalCluster(spec)
    try:
        cluster.up(timeout_s=90)
        yield cluster
    finally:
        gc.collect()  # drop clients in reference cycles before their brokers go
        cluster.down()


def test_acks_all_survives_one_broker_down(three_brokers: LocalCluster) -> None:
    started = time.monotonic()
    bootstrap = three_brokers.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "replicated"
    new_topic = NewTopic(
        topic, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"}
    )
    admin.create_topics([new_topic])[topic].result(timeout=30)

    assert three_brokers.stop_node(2)
    status = three_brokers.status()
    assert [node.running for node in status.nodes] == [True, False, True]

    failures: list[str] = []
    delivered: list[int] = []

    def on_delivery(error: object, message: object) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            delivered.append(1)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 60000,
        }
    )
    for i in range(RECORDS):
        producer.produce(
            topic, key=str(i % 50).encode(), value=str(i).encode(), on_delivery=on_delivery
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    assert len(delivered) == RECORDS

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "three-broker-check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: set[int] = set()
    try:
        deadline = time.monotonic() + 45
        while len(values) < RECORDS and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                assert message.error() is None, message.error()
                values.add(int(message.value()))
    finally:
        consumer.close()
    assert values == set(range(RECORDS))

    three_brokers.start_node(2, timeout_s=60)
    assert three_brokers.status().brokers_answering == 3
    assert time.monotonic() - started < 120
