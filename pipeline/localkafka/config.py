"""The layout of a local KRaft cluster and the ``server.properties`` of each node.

Every node is a combined broker and controller; the controllers form a static
quorum (``controller.quorum.voters``), which needs no extra bootstrap step and
is the same for one node and three. Ports form one contiguous block starting
at ``base_port``: broker listeners first, then controller listeners, so tests
need to find only one free block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Settings

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
ALLOWED_BROKER_COUNTS = (1, 3)


@dataclass(frozen=True)
class ClusterSpec:
    """Where and how a local cluster runs.

    ``cache_dir`` holds the jars (shared by every cluster); ``run_root`` holds
    one directory per cluster name with the nodes' configs, data, logs and pids.
    """

    cache_dir: Path
    run_root: Path
    name: str = "local"
    brokers: int = 1
    base_port: int = 9092
    kafka_version: str = KAFKA_VERSION
    heap: str = "512m"

    def __post_init__(self) -> None:
        if self.brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad cluster name {self.name!r}")
        if not 1024 <= self.base_port <= 65535 - 2 * self.brokers:
            raise ValueError(f"base port {self.base_port} out of range")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        brokers: int = 1,
        name: str | None = None,
        base_port: int | None = None,
    ) -> ClusterSpec:
        """The user's cluster: jars and data under ``settings.cache_dir``."""
        return cls(
            cache_dir=settings.cache_dir,
            run_root=settings.cache_dir / "run",
            name=name or default_cluster_name(brokers),
            brokers=brokers,
            base_port=settings.local_kafka_port if base_port is None else base_port,
        )

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.brokers + 1))

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def cluster_dir(self) -> Path:
        return self.run_root / self.name

    def node_dir(self, node_id: int) -> Path:
        return self.cluster_dir / f"node-{node_id}"

    def broker_port(self, node_id: int) -> int:
        return self.base_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        return self.base_port + self.brokers + node_id - 1

    def ports(self, node_id: int) -> list[int]:
        return [self.broker_port(node_id), self.controller_port(node_id)]

    def all_ports(self) -> list[int]:
        return list(range(self.base_port, self.base_port + 2 * self.brokers))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{HOST}:{self.broker_port(n)}" for n in self.node_ids)


def default_cluster_name(brokers: int) -> str:
    """``local`` for one broker, ``local-3`` for three: the two never share data."""
    return "local" if brokers == 1 else f"local-{brokers}"


def render_server_properties(spec: ClusterSpec, node_id: int) -> str:
    """The ``server.properties`` of one node, tuned for a tiny development cluster."""
    if node_id not in spec.node_ids:
        raise ValueError(f"node {node_id} is not part of a {spec.brokers}-node cluster")
    replication = min(spec.brokers, 3)
    min_isr = 2 if replication >= 3 else 1
    voters = ",".join(f"{n}@{HOST}:{spec.controller_port(n)}" for n in spec.node_ids)
    data_dir = spec.node_dir(node_id) / "data"
    properties: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://{HOST}:{spec.broker_port(node_id)},"
            f"CONTROLLER://{HOST}:{spec.controller_port(node_id)}"
        ),
        "advertised.listeners": f"PLAINTEXT://{HOST}:{spec.broker_port(node_id)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 1,
        "default.replication.factor": replication,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.retention.hours": 168,
    }
    lines = [f"# node {node_id} of local cluster {spec.name!r} (generated; edits are overwritten)"]
    lines += [f"{key}={value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """Parse the simple ``key=value`` lines this module writes."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip()
    return result
