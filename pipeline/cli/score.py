"""``fraud score``: one scorer worker."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

import click

from pipeline.metrics import MetricsServer, ScorerMetrics
from pipeline.scorer import ScorerConfig, ScorerWorker
from pipeline.scorer.config import default_worker_id
from pipeline.settings import load_settings


@click.command(
    "score",
    epilog="""\b
Examples:
  fraud score                                  # join group fraud-scorer, serve the champion
  fraud score --at-least-once --batch-size 500 # lowest latency
  FRAUD_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 fraud score --metrics-port 9108
""",
)
@click.option(
    "--group",
    "group_id",
    default="fraud-scorer",
    show_default=True,
    help="Consumer group; run several workers with the same group to scale out.",
)
@click.option(
    "--worker-id",
    default=None,
    help="Stable id of this worker (names its transactional id). Default: host-pid.",
)
@click.option(
    "--model",
    "model_ref",
    default="champion",
    show_default=True,
    help="Registry reference served at start (champion, v3, ...).",
)
@click.option(
    "--batch-size",
    default=ScorerConfig.batch_size,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Most records consumed and scored together. Only a backlog fills a batch; "
    "below capacity the loop takes whatever is queued.",
)
@click.option(
    "--exactly-once/--at-least-once",
    default=True,
    show_default=True,
    help="One Kafka transaction per commit interval (outputs, state changelog and input "
    "offsets together), or outputs visible at once and offsets committed after their acks.",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "lz4", "zstd", "snappy", "gzip"]),
    default="none",
    show_default=True,
    help="Compression of the outputs (costs scorer CPU; lz4 where the network is the limit).",
)
@click.option(
    "--fetch-min-bytes",
    default=65_536,
    show_default=True,
    type=click.IntRange(1, 52_428_800),
    help="Bytes a fetch waits for, 10 ms at most. Fuller fetches spare the broker's CPU; "
    "1 answers every fetch at once.",
)
@click.option(
    "--commit-interval-ms",
    default=None,
    type=click.IntRange(1, 60_000),
    help="How often to commit. Default: 50 ms exactly-once (decisions become readable at "
    "commit), 1000 ms at-least-once (decisions are readable at once).",
)
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Model registry directory [default: settings.registry_dir].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Prometheus endpoint port (0 = any free port) [default: settings.metrics_port].",
)
@click.option("--no-metrics", is_flag=True, help="Do not serve Prometheus metrics.")
@click.option(
    "--terminal-features/--no-terminal-features",
    default=True,
    show_default=True,
    help="Join delayed terminal aggregates from the terminal-features table.",
)
@click.option(
    "--max-events",
    type=click.IntRange(1),
    default=None,
    help="Stop after deciding this many records (tests, benchmarks).",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1),
    default=None,
    help="Stop after this many seconds without input.",
)
def score(
    group_id: str,
    worker_id: str | None,
    model_ref: str,
    batch_size: int,
    exactly_once: bool,
    compression: str,
    fetch_min_bytes: int,
    commit_interval_ms: int | None,
    registry_dir: str | None,
    metrics_port: int | None,
    no_metrics: bool,
    terminal_features: bool,
    max_events: int | None,
    idle_timeout: float | None,
) -> None:
    """Run one scorer worker: decide every transaction, alert on suspicious ones.

    Consumes the transactions topic in a consumer group, scores each batch with
    the served model, produces one decision per transaction and an alert for
    each review/decline, and dead-letters records it cannot read. It follows the
    model-control topic and hot-swaps models promoted or rolled back in the
    registry. SIGTERM/Ctrl-C finishes the batch, commits and leaves the group;
    a second signal exits at once.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(registry_dir=registry_dir, metrics_port=metrics_port)
    config = ScorerConfig(
        group_id=group_id,
        worker_id=worker_id or default_worker_id(),
        model_ref=model_ref,
        batch_size=batch_size,
        exactly_once=exactly_once,
        compression=compression,
        fetch_min_bytes=fetch_min_bytes,
        commit_interval_s=commit_interval_ms / 1000.0 if commit_interval_ms else None,
        terminal_features=terminal_features,
    )
    metrics = ScorerMetrics()
    worker = ScorerWorker(settings, config, metrics=metrics)
    server = None
    if not no_metrics:
        server = MetricsServer(metrics.registry, settings.metrics_host, settings.metrics_port)
        port = server.start()
        click.echo(f"metrics on http://{settings.metrics_host}:{port}/metrics", err=True)

    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(130)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.start()
        summary = worker.run(max_events=max_events, idle_timeout_s=idle_timeout)
    finally:
        worker.close()
        if server is not None:
            server.stop()
    click.echo(
        f"decided {summary.decided}, alerts {summary.alerts}, dead-lettered "
        f"{summary.dead_lettered}, model swaps {summary.model_swaps}, "
        f"refusals {summary.model_refusals} in {summary.seconds:.1f}s",
        err=True,
    )
    sys.exit(0)
