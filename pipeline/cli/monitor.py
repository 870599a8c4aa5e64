"""``fraud monitor``: the faust-streaming monitor."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.settings import load_settings

if TYPE_CHECKING:
    from pipeline.monitor import MonitorMetrics

HOUR_MS = 3_600_000


@click.command(
    "monitor",
    epilog="""\b
Examples:
  fraud monitor                                # watch the default topics, metrics on :9109
  fraud monitor --cooldown-hours 24 --block-min-count 5000
  FRAUD_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 fraud monitor --metrics-port 9109
""",
)
@click.option("--app-id", default="fraud-monitor", show_default=True, help="Faust app id (group).")
@click.option(
    "--block-min-count",
    type=click.IntRange(100),
    default=None,
    help="Transactions pooled per drift-test block [default: 2000].",
)
@click.option(
    "--reference-blocks",
    type=click.IntRange(1),
    default=None,
    help="Blocks after start that form the reference distribution [default: 6].",
)
@click.option(
    "--cooldown-hours",
    type=click.FloatRange(0),
    default=None,
    help="Event-time hours between retraining requests of one model [default: 72].",
)
@click.option(
    "--skip-in-sample/--use-in-sample",
    "skip_in_sample",
    default=True,
    show_default=True,
    help="Keep outcomes inside a model version's training data range (read from the "
    "registry) from its error-rate detector.",
)
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory, for training data ranges [default: FRAUD_REGISTRY_DIR, else "
    "models/].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Prometheus endpoint port (0 = any free port) [default: settings.metrics_port + 1].",
)
@click.option("--no-metrics", is_flag=True, help="Do not serve Prometheus metrics.")
@click.option(
    "--run-for",
    type=click.FloatRange(1),
    default=None,
    help="Stop cleanly after this many seconds (tests, demos).",
)
@click.option("--log-level", default="WARNING", show_default=True, help="Faust log level.")
def monitor(
    app_id: str,
    block_min_count: int | None,
    reference_blocks: int | None,
    cooldown_hours: float | None,
    skip_in_sample: bool,
    registry_dir: Path | None,
    metrics_port: int | None,
    no_metrics: bool,
    run_for: float | None,
    log_level: str,
) -> None:
    """Watch the scorers: drift, online accuracy, and retraining requests.

    Consumes monitor-stats (per-window summaries of every scorer worker),
    outcomes (decisions joined to their labels) and drift-events. It merges the
    workers' windows, runs River drift detectors on score and feature
    distributions (fast, no labels) and on the error stream (slow, labelled),
    tracks precision, recall, average precision and card precision@k per model
    version, publishes a DriftEvent for each detection and at most one
    RetrainRequest per model per cooldown. Outcomes of transactions a model
    version was trained on (its data range in the registry) do not feed its
    error detector. Everything runs on event time, so an accelerated replay
    behaves like live traffic. Bad records go to the dead-letter topic.
    SIGTERM/Ctrl-C stops it cleanly.
    """
    import dataclasses

    import faust

    from pipeline.metrics import MetricsServer
    from pipeline.monitor import MonitorConfig, MonitorMetrics
    from pipeline.monitor.app import create_app
    from pipeline.monitor.lineage import RegistryTrainingRanges

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(registry_dir=registry_dir)
    config = MonitorConfig()
    overrides: dict[str, Any] = {"error_skip_in_sample": skip_in_sample}
    if block_min_count is not None:
        overrides["block_min_count"] = block_min_count
    if reference_blocks is not None:
        overrides["reference_blocks"] = reference_blocks
    if cooldown_hours is not None:
        overrides["retrain_cooldown_ms"] = int(cooldown_hours * HOUR_MS)
    config = dataclasses.replace(config, **overrides)
    metrics = MonitorMetrics()
    built = create_app(
        settings,
        config,
        metrics=metrics,
        app_id=app_id,
        training_ranges=RegistryTrainingRanges(settings.registry_dir) if skip_in_sample else None,
    )
    server = None
    if not no_metrics:
        port = settings.metrics_port + 1 if metrics_port is None else metrics_port
        server = MetricsServer(metrics.registry, settings.metrics_host, port)
        bound = server.start()
        click.echo(f"metrics on http://{settings.metrics_host}:{bound}/metrics", err=True)
    if run_for is not None:
        timer = threading.Timer(run_for, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    worker = faust.Worker(built.app, loglevel=log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        if server is not None:
            server.stop()
    click.echo(_summary(metrics), err=True)


def _summary(metrics: MonitorMetrics) -> str:
    """One line of what the run did, from the metrics registry."""
    registry = metrics.registry
    totals: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                name = sample.name.removeprefix("fraud_monitor_").removesuffix("_total")
                if name == "dead_letters":
                    name = f"dead_letters[{sample.labels['reason']}]"
                totals[name] = totals.get(name, 0.0) + sample.value
    return "monitor: " + ", ".join(f"{k} {v:g}" for k, v in sorted(totals.items()))
