"""A local Apache Kafka cluster (KRaft) of one or three nodes, without Docker.

``LocalCluster(spec).up()`` resolves the jars (once), formats each node's
storage (once), starts the JVMs detached and waits until the cluster answers a
metadata request. ``down()`` stops exactly the processes named by the pid files.
Single nodes can be stopped and started again for fault tests.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.localkafka import jars, process
from pipeline.localkafka.config import HOST, ClusterSpec, render_server_properties
from pipeline.localkafka.errors import ClusterLayoutError, ClusterStartError
from pipeline.localkafka.ports import require_free_ports

STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class NodeStatus:
    """One node as seen from its pid file and port."""

    node_id: int
    port: int
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class ClusterStatus:
    """The processes of a cluster and whether it answers metadata requests."""

    name: str
    bootstrap_servers: str
    nodes: tuple[NodeStatus, ...]
    brokers_answering: int | None

    @property
    def running_nodes(self) -> int:
        return sum(node.running for node in self.nodes)


class LocalCluster:
    """Handle on one local cluster; cheap to build, does nothing until asked."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- public API -----------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return self.spec.bootstrap_servers

    def up(
        self, timeout_s: float = 90.0, on_step: Callable[[str], None] | None = None
    ) -> list[int]:
        """Start every node that is not running and wait until all brokers answer.

        Returns the ids of the nodes it started; ``on_step`` hears each stage.
        """
        step = on_step or (lambda _message: None)
        java = jars.find_java()
        if not jars.jars_ready(self.spec.libs_dir):
            step(
                f"fetching Apache Kafka {self.spec.kafka_version} jars with Maven (first run only)"
            )
        libs = jars.ensure_jars(self.spec.libs_dir, self.spec.kafka_version)
        self._check_layout()
        to_start = [n for n in self.spec.node_ids if self.node_pid(n) is None]
        require_free_ports(port for n in to_start for port in self.spec.ports(n))
        self._write_configs()
        unformatted = [n for n in to_start if not self._formatted(n)]
        if unformatted:
            step(f"formatting KRaft storage of node(s) {', '.join(map(str, unformatted))}")
            self._format(java, libs, unformatted)
        if to_start:
            step(f"starting node(s) {', '.join(map(str, to_start))}")
        try:
            for node_id in to_start:
                self._spawn(java, libs, node_id)
            step("waiting for the cluster to answer")
            self.wait_ready(timeout_s)
        except BaseException:
            for node_id in to_start:  # leave nothing half-started behind
                self.stop_node(node_id, grace_s=5.0)
            raise
        return to_start

    def down(self, grace_s: float = 20.0) -> list[int]:
        """Stop every node (SIGTERM, then SIGKILL); return the node ids that were running."""
        running = {n: pid for n in self.spec.node_ids if (pid := self.node_pid(n)) is not None}
        nodes = [(pid, self._config_file(n)) for n, pid in running.items()]
        if not process.terminate_all(nodes, grace_s):
            raise ClusterStartError(f"cluster {self.spec.name!r} did not stop even after SIGKILL")
        for node_id in self.spec.node_ids:
            child = self._children.pop(node_id, None)
            if child is not None:
                child.poll()
            self._pid_file(node_id).unlink(missing_ok=True)
        return sorted(running)

    def purge(self) -> None:
        """Stop the cluster and delete its data, configs and logs (the jars stay)."""
        self.down()
        shutil.rmtree(self.spec.cluster_dir, ignore_errors=True)

    def stop_node(self, node_id: int, grace_s: float = 20.0) -> bool:
        """Stop one node gracefully; True if it was running."""
        pid = self.node_pid(node_id)
        pid_file = self._pid_file(node_id)
        if pid is None:
            pid_file.unlink(missing_ok=True)
            return False
        if not process.terminate(pid, self._config_file(node_id), grace_s):
            raise ClusterStartError(f"node {node_id} (pid {pid}) did not stop even after SIGKILL")
        child = self._children.pop(node_id, None)
        if child is not None:
            child.poll()
        pid_file.unlink(missing_ok=True)
        return True

    def start_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """Start one (already formatted) node again and wait until it serves."""
        if self.node_pid(node_id) is not None:
            return
        java = jars.find_java()
        require_free_ports(self.spec.ports(node_id))
        self._write_configs()
        self._spawn(java, self.spec.libs_dir, node_id)
        self.wait_ready(timeout_s)

    def node_pid(self, node_id: int) -> int | None:
        return process.running_pid(self._pid_file(node_id), self._config_file(node_id))

    def status(self, timeout_s: float = 3.0) -> ClusterStatus:
        """Which nodes run, and how many brokers the cluster reports (None: no answer)."""
        nodes = tuple(
            NodeStatus(n, self.spec.broker_port(n), self.node_pid(n)) for n in self.spec.node_ids
        )
        answering = None
        if any(node.running for node in nodes):
            answering = self._brokers_answering(timeout_s)
        return ClusterStatus(self.spec.name, self.bootstrap_servers, nodes, answering)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until every running node is a live broker in the cluster metadata."""
        deadline = time.monotonic() + timeout_s
        expected = [n for n in self.spec.node_ids if self._pid_file(n).exists()]
        while time.monotonic() < deadline:
            for node_id in expected:
                if self.node_pid(node_id) is None:
                    raise ClusterStartError(
                        f"node {node_id} exited during start-up; "
                        f"see {self._log_file(node_id)}: {self._log_tail(node_id)}"
                    )
            if all(_port_open(self.spec.broker_port(n)) for n in expected):
                answering = self._brokers_answering(min(2.0, timeout_s))
                if answering is not None and answering >= len(expected):
                    return
            time.sleep(0.2)
        raise ClusterStartError(
            f"cluster {self.spec.name!r} did not answer within {timeout_s:.0f} s; "
            f"see the logs under {self.spec.cluster_dir}"
        )

    # --- internals --------------------------------------------------------------

    def _pid_file(self, node_id: int) -> Path:
        return self.spec.node_dir(node_id) / "kafka.pid"

    def _config_file(self, node_id: int) -> Path:
        return self.spec.node_dir(node_id) / "server.properties"

    def _log_file(self, node_id: int) -> Path:
        return self.spec.node_dir(node_id) / "kafka.log"

    def _log4j_file(self) -> Path:
        return self.spec.cluster_dir / "log4j2.properties"

    def _formatted(self, node_id: int) -> bool:
        return (self.spec.node_dir(node_id) / "data" / "meta.properties").is_file()

    def _check_layout(self) -> None:
        """Refuse to reuse data formatted for another number of nodes."""
        state_file = self.spec.cluster_dir / _STATE_FILE
        if not state_file.is_file():
            return
        state = json.loads(state_file.read_text())
        running = [n for n in self.spec.node_ids if self.node_pid(n) is not None]
        if running and state.get("base_port") != self.spec.base_port:
            raise ClusterLayoutError(
                f"local cluster {self.spec.name!r} is running on base port "
                f"{state.get('base_port')}, not {self.spec.base_port}; run `fraud kafka down` first"
            )
        if state.get("brokers") != self.spec.brokers:
            raise ClusterLayoutError(
                f"local cluster {self.spec.name!r} was formatted with {state.get('brokers')} "
                f"broker(s), not {self.spec.brokers}; run `fraud kafka down --purge "
                f"--name {self.spec.name}` to start over, or choose another --name"
            )

    def _write_configs(self) -> None:
        cluster_dir = self.spec.cluster_dir
        cluster_dir.mkdir(parents=True, exist_ok=True)
        state_file = cluster_dir / _STATE_FILE
        if state_file.is_file():
            cluster_id = json.loads(state_file.read_text())["cluster_id"]
        else:
            cluster_id = new_cluster_id()
        state = {
            "cluster_id": cluster_id,
            "brokers": self.spec.brokers,
            "base_port": self.spec.base_port,
            "kafka_version": self.spec.kafka_version,
        }
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        log4j = resources.files("pipeline.localkafka").joinpath("log4j2.properties")
        self._log4j_file().write_bytes(log4j.read_bytes())
        for node_id in self.spec.node_ids:
            self.spec.node_dir(node_id).mkdir(parents=True, exist_ok=True)
            self._config_file(node_id).write_text(render_server_properties(self.spec, node_id))

    def _cluster_id(self) -> str:
        state = json.loads((self.spec.cluster_dir / _STATE_FILE).read_text())
        return str(state["cluster_id"])

    def _format(self, java: str, libs: Path, node_ids: list[int]) -> None:
        """Format the storage of the given nodes, in parallel (one short JVM each)."""
        cluster_id = self._cluster_id()
        running = []
        for node_id in node_ids:
            command = [
                java,
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",  # a short-lived tool: C1 only saves ~40% CPU
                *process.JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={self._log4j_file()}",
                "-cp",
                f"{libs}/*",
                STORAGE_TOOL_CLASS,
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self._config_file(node_id)),
            ]
            running.append(
                (
                    node_id,
                    subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    ),
                )
            )
        for node_id, proc in running:
            output, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                last = output.strip().splitlines()[-1:] or ["no output"]
                raise ClusterStartError(f"formatting node {node_id} failed: {last[0]}")

    def _spawn(self, java: str, libs: Path, node_id: int) -> None:
        command = process.java_command(
            java, libs, self._config_file(node_id), self._log4j_file(), self.spec.heap
        )
        child = process.spawn_detached(command, self._log_file(node_id))
        self._children[node_id] = child
        self._pid_file(node_id).write_text(f"{child.pid}\n")

    def _brokers_answering(self, timeout_s: float) -> int | None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=timeout_s)
        except KafkaException:
            return None
        return len(metadata.brokers)

    def _log_tail(self, node_id: int) -> str:
        try:
            lines = self._log_file(node_id).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        interesting = [line for line in lines if "ERROR" in line or "Exception" in line]
        return (interesting or lines or ["empty log"])[-1][:300]


def load_cluster(run_root: Path, cache_dir: Path, name: str) -> LocalCluster | None:
    """The cluster recorded under ``run_root/name`` with the layout it was created with."""
    state_file = run_root / name / _STATE_FILE
    try:
        state = json.loads(state_file.read_text())
        spec = ClusterSpec(
            cache_dir=cache_dir,
            run_root=run_root,
            name=name,
            brokers=int(state["brokers"]),
            base_port=int(state["base_port"]),
            kafka_version=str(state["kafka_version"]),
        )
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return LocalCluster(spec)


def known_clusters(run_root: Path, cache_dir: Path) -> list[LocalCluster]:
    """Every cluster recorded under ``run_root``, by name."""
    if not run_root.is_dir():
        return []
    found = (load_cluster(run_root, cache_dir, path.name) for path in sorted(run_root.iterdir()))
    return [cluster for cluster in found if cluster is not None]


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0
