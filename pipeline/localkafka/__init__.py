"""A real Apache Kafka (KRaft) on loopback, started from Maven Central jars, no Docker."""

from pipeline.localkafka.cluster import (
    ClusterStatus,
    LocalCluster,
    NodeStatus,
    known_clusters,
    load_cluster,
)
from pipeline.localkafka.config import ClusterSpec, render_server_properties
from pipeline.localkafka.errors import LocalKafkaError, PortInUseError
from pipeline.localkafka.ports import find_free_port_block, port_is_free

__all__ = [
    "ClusterSpec",
    "ClusterStatus",
    "LocalCluster",
    "LocalKafkaError",
    "NodeStatus",
    "PortInUseError",
    "find_free_port_block",
    "known_clusters",
    "load_cluster",
    "port_is_free",
    "render_server_properties",
]
