"""``fraud demo``: the whole story on a local broker, one real command at a time."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import click

from pipeline.errors import FraudError
from pipeline.settings import load_settings


class DemoError(FraudError):
    """A demo step failed."""


def _fraud(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def _show(command: list[str]) -> None:
    shown = ["fraud", *command[3:]] if command[:3] == _fraud() else command
    click.secho("$ " + shlex.join(shown), fg="cyan", err=True)


def _run(command: list[str], env: dict[str, str], timeout_s: float = 600) -> str:
    _show(command)
    result = subprocess.run(command, env=env, text=True, capture_output=True, timeout=timeout_s)
    output = (result.stdout + result.stderr).strip()
    if output:
        click.echo(output)
    if result.returncode != 0:
        raise DemoError(f"step failed (exit {result.returncode}): {shlex.join(command[3:])}")
    return result.stdout


def _metrics_excerpt(port: int) -> list[str]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = (
        "fraud_scorer_events_in_total",
        "fraud_scorer_decisions_by_action_total",
        "fraud_scorer_alerts_total",
        "fraud_scorer_dead_letters_total",
        "fraud_scorer_model_info",
        "fraud_scorer_end_to_end_seconds_count",
        "fraud_scorer_end_to_end_seconds_sum",
    )
    return [line for line in body.splitlines() if line.startswith(wanted)]


@click.command(
    "demo",
    epilog="""\b
Example:
  fraud demo               # about two minutes; everything is cleaned up after
  fraud demo --keep        # leave the broker running to explore (fraud kafka down --name demo)
""",
)
@click.option(
    "--days",
    default=35,
    show_default=True,
    type=click.IntRange(29, 120),
    help="Simulated days: the first weeks train the champion, the last one is replayed.",
)
@click.option("--customers", default=2000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--keep", is_flag=True, help="Leave the demo broker running afterwards.")
def demo(days: int, customers: int, keep: bool) -> None:
    """Run the whole pipeline end to end on a local Apache Kafka.

    Starts a broker (KRaft, from Maven Central jars), creates the topics,
    simulates card transactions with fraud, trains and registers a champion,
    publishes terminal features, starts a scorer, replays the last week with
    its delayed labels, shows alerts arriving and the scorer's metrics, then
    stops everything cleanly. Each step prints the `fraud` command it runs.
    """
    load_settings()  # validate the environment before starting anything
    workdir = Path(tempfile.mkdtemp(prefix="fraud-demo-"))
    data = workdir / "transactions.parquet"
    from pipeline.localkafka import find_free_port_block

    port = find_free_port_block(2)
    metrics_port = find_free_port_block(1)
    env = dict(
        os.environ,
        FRAUD_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        FRAUD_REGISTRY_DIR=str(workdir / "models"),
        FRAUD_PARTITIONS="3",
        PYTHONUNBUFFERED="1",
    )
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    scorer: subprocess.Popen[str] | None = None
    started = time.monotonic()
    try:
        click.secho("1. A local Apache Kafka broker (KRaft, no Docker)", bold=True, err=True)
        _run(_fraud("kafka", "up", "--name", "demo", "--port", str(port), "--force"), env)
        _run(_fraud("topics", "create"), env)

        click.secho(
            "2. Simulated card transactions with three fraud scenarios", bold=True, err=True
        )
        _run(
            _fraud(
                "simulate",
                "--days",
                str(days),
                "--customers",
                str(customers),
                "--terminals",
                str(customers * 2),
                "--seed",
                "7",
                "--out",
                str(data),
            ),
            env,
        )

        click.secho("3. Train and register a champion on the first weeks", bold=True, err=True)
        train_end = date(2018, 4, 1) + timedelta(days=days - 15)
        _run(
            _fraud(
                "train",
                "--data",
                str(data),
                "--train-end",
                train_end.isoformat(),
                "--register",
                "--alias",
                "champion",
            ),
            env,
        )
        _run(_fraud("models", "list"), env)

        click.secho("4. Terminal features from the labelled history", bold=True, err=True)
        replay_start = (train_end + timedelta(days=8)).isoformat()
        history = workdir / "history.parquet"
        import pandas as pd

        frame = pd.read_parquet(data)
        frame[frame["timestamp"] < pd.Timestamp(replay_start)].to_parquet(history)
        _run(_fraud("terminal-features", "--data", str(history)), env)

        click.secho("5. A scorer worker joins the consumer group", bold=True, err=True)
        command = _fraud("score", "--metrics-port", str(metrics_port), "--worker-id", "demo-1")
        _show(command)
        scorer = subprocess.Popen(
            command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        time.sleep(3)
        if scorer.poll() is not None:
            output = scorer.stdout.read() if scorer.stdout else ""
            raise DemoError(f"the scorer exited early: {output.strip()[-500:]}")

        click.secho("6. Replay the last week (with delayed labels) into Kafka", bold=True, err=True)
        _run(_fraud("replay", "--data", str(data), "--start", replay_start, "--labels"), env)
        time.sleep(5)

        click.secho("7. Alerts as case management sees them", bold=True, err=True)
        _run(_fraud("alerts", "--limit", "10"), env)

        click.secho("8. The scorer's Prometheus metrics", bold=True, err=True)
        _show(["curl", "-s", f"http://127.0.0.1:{metrics_port}/metrics"])
        for line in _metrics_excerpt(metrics_port):
            click.echo(line)
    finally:
        if scorer is not None and scorer.poll() is None:
            click.secho(
                "9. Stop the scorer (SIGTERM: finish the batch, commit, leave)", bold=True, err=True
            )
            scorer.send_signal(signal.SIGTERM)
            try:
                output, _ = scorer.communicate(timeout=60)
                tail = [line for line in output.splitlines() if "decided" in line]
                if tail:
                    click.echo(tail[-1])
            except subprocess.TimeoutExpired:
                scorer.kill()
        if not keep:
            subprocess.run(
                _fraud("kafka", "down", "--name", "demo", "--purge"),
                env=env,
                capture_output=True,
                timeout=120,
            )
    click.secho(f"demo finished in {time.monotonic() - started:.0f}s", bold=True, err=True)
