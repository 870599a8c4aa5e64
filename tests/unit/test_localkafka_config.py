"""Rendering of the local cluster's server.properties, its port layout and port checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.localkafka import ClusterSpec, PortInUseError, find_free_port_block, port_is_free
from pipeline.localkafka.cluster import new_cluster_id
from pipeline.localkafka.config import parse_properties, render_server_properties
from pipeline.localkafka.jars import java_major_version
from pipeline.localkafka.ports import require_free_ports
from pipeline.settings import load_settings


def spec(tmp_path: Path, brokers: int, base_port: int = 9092) -> ClusterSpec:
    return ClusterSpec(
        cache_dir=tmp_path / "cache",
        run_root=tmp_path / "run",
        name="t",
        brokers=brokers,
        base_port=base_port,
    )


def test_single_node_properties(tmp_path: Path) -> None:
    one = spec(tmp_path, brokers=1)
    props = parse_properties(render_server_properties(one, 1))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["log.dirs"] == str(tmp_path / "run" / "t" / "node-1" / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "1"
    assert one.bootstrap_servers == "127.0.0.1:9092"


def test_three_node_properties_share_a_static_quorum(tmp_path: Path) -> None:
    three = spec(tmp_path, brokers=3, base_port=30000)
    rendered = [parse_properties(render_server_properties(three, n)) for n in (1, 2, 3)]
    voters = "1@127.0.0.1:30003,2@127.0.0.1:30004,3@127.0.0.1:30005"
    assert {props["controller.quorum.voters"] for props in rendered} == {voters}
    assert [props["advertised.listeners"] for props in rendered] == [
        "PLAINTEXT://127.0.0.1:30000",
        "PLAINTEXT://127.0.0.1:30001",
        "PLAINTEXT://127.0.0.1:30002",
    ]
    assert len({props["log.dirs"] for props in rendered}) == 3
    for props in rendered:
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["listeners"].count("127.0.0.1") == 2  # loopback only
    assert three.bootstrap_servers == "127.0.0.1:30000,127.0.0.1:30001,127.0.0.1:30002"
    assert three.all_ports() == list(range(30000, 30006))


def test_unknown_node_and_bad_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="node 2"):
        render_server_properties(spec(tmp_path, brokers=1), 2)
    with pytest.raises(ValueError, match="at least one"):
        spec(tmp_path, brokers=0)
    with pytest.raises(ValueError, match="name"):
        ClusterSpec(cache_dir=tmp_path, run_root=tmp_path, name="../escape")


def test_spec_from_settings_uses_cache_dir_and_port(tmp_path: Path) -> None:
    settings = load_settings(cache_dir=tmp_path, local_kafka_port=19092)
    three = ClusterSpec.from_settings(settings, brokers=3)
    assert three.name == "local-3"
    assert three.libs_dir == tmp_path / "kafka-4.1.1" / "libs"
    assert three.node_dir(2) == tmp_path / "run" / "local-3" / "node-2"
    assert three.ports(2) == [19093, 19096]
    assert ClusterSpec.from_settings(settings).name == "local"


def test_taken_port_is_detected_and_named() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        assert not port_is_free(taken)
        with pytest.raises(PortInUseError, match=str(taken)) as error:
            require_free_ports([taken])
        assert "--port" in str(error.value)
    assert port_is_free(taken)


def test_free_port_block_is_free() -> None:
    base = find_free_port_block(6)
    assert all(port_is_free(base + offset) for offset in range(6))


def test_cluster_ids_are_kraft_shaped() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no java here", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major
