"""``fraud terminal-features``: the nearline job publishing per-terminal histories."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from pipeline.features.spec import DAY_MS

if TYPE_CHECKING:
    from pipeline.settings import Settings


@click.command(
    "terminal-features",
    context_settings={"max_content_width": 100},
    epilog="""\b
Examples:
  fraud terminal-features                          # follow transactions + labels forever
  fraud terminal-features --publish-every 15       # publish every 15 event-time minutes
  fraud terminal-features --data tx.parquet        # backfill: histories as of the file's end
  fraud terminal-features --idle-timeout 5 --json  # stop after 5 s without input, print summary
""",
)
@click.option(
    "--group",
    "group_id",
    default="fraud-terminal-features",
    show_default=True,
    help="Consumer group the job commits its progress under (for lag monitoring).",
)
@click.option(
    "--publish-every",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="Publish changed terminals every this many minutes of event time.",
)
@click.option(
    "--from-beginning/--from-committed",
    default=True,
    show_default=True,
    help="State is kept in memory: reading from the beginning rebuilds it. "
    "--from-committed skips input already seen, so histories lack it until "
    "the retention has passed.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(31),
    default=None,
    help="Matured history kept per terminal, back from the maturity bound "
    "[default: 31 for the stream, everything for --data].",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Backfill from this data file (with is_fraud) instead of consuming topics.",
)
@click.option(
    "--max-events",
    type=click.IntRange(1),
    default=None,
    help="Stop after consuming this many records (tests, benchmarks).",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1),
    default=None,
    help="Stop after this many seconds without input.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def terminal_features(
    group_id: str,
    publish_every: int,
    from_beginning: bool,
    retention_days: int | None,
    data_path: Path | None,
    max_events: int | None,
    idle_timeout: float | None,
    as_json: bool,
) -> None:
    """Publish per-terminal transaction histories for the terminal features.

    Reads the transactions and labels topics, keeps each terminal's
    transactions with their fraud labels, and publishes to the compacted
    terminal-features topic (key: terminal id) the *matured* part of each
    history: transactions at least the label delay old, flagged fraud when
    their label has arrived. Scorers read that topic whole as a table. While
    it catches up on its backlog it publishes nothing, then everything at once.

    With --data it computes the histories of a data file as of its last
    transaction and publishes them once (backfill before a replay).
    """
    from pipeline.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    retention_ms = retention_days * DAY_MS if retention_days is not None else None
    if data_path is not None:
        _backfill(settings, data_path, retention_ms, as_json)
        return
    from pipeline.terminal import DEFAULT_RETENTION_MS, JobConfig, TerminalFeaturesJob

    config = JobConfig(
        group_id=group_id,
        publish_every_ms=publish_every * 60_000,
        from_beginning=from_beginning,
        retention_ms=retention_ms if retention_ms is not None else DEFAULT_RETENTION_MS,
    )
    job = TerminalFeaturesJob(settings, config)
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(130)
        job.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    summary = job.run(max_events=max_events, idle_timeout_s=idle_timeout, progress=True)
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    click.echo(
        f"{summary.transactions} transactions, {summary.labels} labels "
        f"({summary.bad_transactions + summary.bad_labels} unreadable) -> "
        f"{summary.records} histories, {summary.tombstones} tombstones in "
        f"{summary.publications} publications; {summary.terminals} terminals held; "
        f"{summary.events_per_s:,.0f} events/s",
        err=True,
    )


def _backfill(settings: Settings, data_path: Path, retention_ms: int | None, as_json: bool) -> None:
    from pipeline.data.io import read_transactions
    from pipeline.terminal import backfill

    frame = read_transactions(data_path, require_labels=True)
    summary = backfill(settings, frame, retention_ms=retention_ms)
    if as_json:
        click.echo(json.dumps(summary.__dict__))
    click.echo(
        f"published {summary.terminals} terminal histories ({summary.transactions} matured "
        f"transactions) to {settings.topics.terminal_features}",
        err=True,
    )
