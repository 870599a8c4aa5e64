"""``fraud kafka up|down|status|fetch``: a local Apache Kafka (KRaft) without Docker."""

from __future__ import annotations

import time

import click

from pipeline.localkafka import (
    ClusterSpec,
    LocalCluster,
    LocalKafkaError,
    known_clusters,
    load_cluster,
)
from pipeline.localkafka.config import ALLOWED_BROKER_COUNTS
from pipeline.settings import Settings, load_settings


def _say(message: str) -> None:
    click.echo(f"fraud kafka: {message}", err=True)


@click.group()
def kafka() -> None:
    """Run a real Apache Kafka (KRaft mode) on this machine, no Docker needed.

    The broker jars come from Maven Central through `mvn` (Java 17+ and Maven
    required) and are cached under FRAUD_CACHE_DIR (default
    ~/.cache/fraud-pipeline); data, configs, logs and pid files live under
    <cache dir>/run/<name>/. Brokers listen on 127.0.0.1 only.

    \b
    Examples:
      fraud kafka up                 # one broker on 127.0.0.1:9092
      fraud kafka up --brokers 3     # three brokers on 9092-9094
      fraud kafka status
      fraud kafka down --purge       # stop and delete the data
    """


@kafka.command()
@click.option(
    "--brokers",
    type=click.Choice([str(n) for n in ALLOWED_BROKER_COUNTS]),
    default="1",
    show_default=True,
    help="Number of combined broker+controller nodes.",
)
@click.option(
    "--port",
    type=click.IntRange(1024, 65000),
    default=None,
    help="First port (default FRAUD_LOCAL_KAFKA_PORT or 9092). Brokers use port..port+N-1, "
    "controllers the next N ports.",
)
@click.option("--name", default=None, help="Cluster name (default: local, or local-3).")
@click.option(
    "--timeout",
    type=click.FloatRange(5, 600),
    default=90.0,
    show_default=True,
    help="Seconds to wait for the cluster to answer.",
)
@click.option(
    "--force", is_flag=True, help="Start even though external bootstrap servers are configured."
)
def up(brokers: str, port: int | None, name: str | None, timeout: float, force: bool) -> None:
    """Start a local Kafka cluster and wait until it answers.

    Idempotent: running nodes are left alone. The first start downloads the
    jars (about 55 MB); later starts take a few seconds.

    \b
    Example:
      fraud kafka up --brokers 3
      export FRAUD_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094
    """
    settings = load_settings()
    spec = ClusterSpec.from_settings(settings, brokers=int(brokers), name=name, base_port=port)
    external = _external_bootstrap(settings, spec)
    if external is not None and not force:
        _say(
            f"an external cluster is configured ({external}); nothing started. "
            "Unset KAFKA_BOOTSTRAP_SERVERS / FRAUD_KAFKA_BOOTSTRAP_SERVERS or pass --force."
        )
        return
    cluster = LocalCluster(spec)
    started_at = time.monotonic()
    started = cluster.up(timeout_s=timeout, on_step=_say)
    elapsed = time.monotonic() - started_at
    if started:
        _say(f"cluster {spec.name!r} up with {spec.brokers} broker(s) in {elapsed:.1f} s")
    else:
        _say(f"cluster {spec.name!r} was already running")
    _say(f"logs: {spec.cluster_dir}/node-*/kafka.log")
    if spec.bootstrap_servers != settings.kafka_bootstrap_servers:
        _say(f"export FRAUD_KAFKA_BOOTSTRAP_SERVERS={spec.bootstrap_servers}")
    click.echo(spec.bootstrap_servers)


@kafka.command()
@click.option("--name", default=None, help="Only this cluster (default: every local cluster).")
@click.option("--purge", is_flag=True, help="Also delete the cluster's data, configs and logs.")
def down(name: str | None, purge: bool) -> None:
    """Stop local Kafka clusters started by `fraud kafka up`.

    Stops exactly the processes recorded in the pid files (SIGTERM, then
    SIGKILL after a grace period). Data stays unless --purge is given.

    \b
    Example:
      fraud kafka down --purge
    """
    settings = load_settings()
    clusters = _clusters(settings, name)
    if not clusters:
        _say("no local cluster found; nothing to stop")
        return
    for cluster in clusters:
        stopped = cluster.down()
        if purge:
            cluster.purge()
        what = f"stopped node(s) {', '.join(map(str, stopped))}" if stopped else "was not running"
        suffix = "; data deleted" if purge else ""
        _say(f"cluster {cluster.spec.name!r} {what}{suffix}")


@kafka.command()
@click.option("--name", default=None, help="Only this cluster (default: every local cluster).")
def status(name: str | None) -> None:
    """Show which local nodes run and whether the cluster answers.

    Exits non-zero when no local cluster answers.

    \b
    Example:
      fraud kafka status
    """
    settings = load_settings()
    clusters = _clusters(settings, name)
    any_answering = False
    for cluster in clusters:
        report = cluster.status()
        nodes = ", ".join(
            f"node {node.node_id} :{node.port} "
            + (f"pid {node.pid}" if node.running else "stopped")
            for node in report.nodes
        )
        if report.brokers_answering is None:
            health = "not answering" if report.running_nodes else "down"
        else:
            health = f"answering, {report.brokers_answering} broker(s) live"
            any_answering = True
        click.echo(f"{report.name}: {health} ({nodes}) bootstrap {report.bootstrap_servers}")
    if not any_answering:
        raise LocalKafkaError("no local cluster answers; start one with `fraud kafka up`")


def _clusters(settings: Settings, name: str | None) -> list[LocalCluster]:
    run_root = settings.cache_dir / "run"
    if name is None:
        return known_clusters(run_root, settings.cache_dir)
    cluster = load_cluster(run_root, settings.cache_dir, name)
    return [] if cluster is None else [cluster]


def _external_bootstrap(settings: Settings, spec: ClusterSpec) -> str | None:
    """The configured bootstrap servers if they point somewhere else than this cluster."""
    if "kafka_bootstrap_servers" not in settings.model_fields_set:
        return None
    configured = {s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()}
    local = set(spec.bootstrap_servers.split(","))
    local |= {s.replace("127.0.0.1", "localhost") for s in local}
    return None if configured <= local else settings.kafka_bootstrap_servers


@kafka.command()
def fetch() -> None:
    """Resolve the Apache Kafka jars from Maven Central into the cache (idempotent).

    `fraud kafka up` does this by itself; run it ahead of time to warm the
    cache (CI, image builds).

    \b
    Example:
      fraud kafka fetch
    """
    from pipeline.localkafka.config import KAFKA_VERSION
    from pipeline.localkafka.jars import ensure_jars

    settings = load_settings()
    libs = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    started = time.monotonic()
    ensure_jars(libs, KAFKA_VERSION)
    _say(f"Kafka {KAFKA_VERSION} jars ready in {libs} ({time.monotonic() - started:.1f}s)")
