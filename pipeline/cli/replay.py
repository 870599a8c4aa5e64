"""``fraud replay``: send a transactions file to Kafka, fast or paced by event time."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from pipeline.replay.payloads import FORMATS

_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--data",
    "data",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Transactions file: .parquet, .csv or .csv.gz (the data-file contract).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Replay X times faster than real time (3600 = one simulated hour per second). "
    "Default: as fast as possible.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="avro",
    show_default=True,
    help="Message encoding: Avro in Confluent framing, or one JSON object per message.",
)
@click.option(
    "--labels",
    is_flag=True,
    help="Also send a Label per transaction to the labels topic when it becomes known "
    "(transaction time + label delay), interleaved by time. Needs an is_fraud column.",
)
@click.option(
    "--label-delay-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Days from a transaction to its label (default FRAUD_LABEL_DELAY_DAYS or 7).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="Send at most the first N transactions (after --start/--end).",
)
@click.option(
    "--start",
    type=click.DateTime(formats=_TIME_FORMATS),
    default=None,
    help="First transaction time to send (UTC), e.g. 2018-07-01.",
)
@click.option(
    "--end",
    type=click.DateTime(formats=_TIME_FORMATS),
    default=None,
    help="Send transactions before this time (UTC, exclusive).",
)
def replay(
    data: Path,
    speed: float | None,
    fmt: str,
    labels: bool,
    label_delay_days: float | None,
    limit: int | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> None:
    """Replay a transactions file into Kafka, in timestamp order.

    Each transaction goes to the transactions topic keyed by its card id; its
    event time is the record's timestamp field, and the Kafka message timestamp
    is the moment it was sent (so consumers can measure end-to-end latency).
    With --labels, each transaction's label follows on the labels topic once
    the label delay has passed in event time. Prints a summary at the end and
    exits non-zero if any message could not be delivered.

    \b
    Examples:
      fraud replay --data data/tx.parquet                  # as fast as possible
      fraud replay --data data/tx.parquet --speed 3600 --labels
      fraud replay --data data/tx.csv.gz --start 2018-08-01 --end 2018-08-08 --format json
      fraud replay --data data/tx.parquet --limit 10000 --labels --label-delay-days 0
    """
    from pipeline.data.io import read_transactions
    from pipeline.replay import ReplayError, select_rows
    from pipeline.replay import replay as run_replay
    from pipeline.settings import load_settings

    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--end must be after --start", param_hint="--end")
    settings = load_settings()
    frame = select_rows(read_transactions(data), start=start, end=end, limit=limit)
    if labels and "is_fraud" not in frame.columns:
        raise ReplayError(f"{data}: --labels needs an is_fraud column")
    click.echo(
        f"replaying {len(frame):,} transactions from {data} to "
        f"{settings.kafka_bootstrap_servers} ({'as fast as possible' if speed is None else f'x{speed:g}'})",
        err=True,
    )
    summary = run_replay(
        settings,
        frame,
        speed=speed,
        fmt="json" if fmt == "json" else "avro",
        labels=labels,
        label_delay_days=label_delay_days,
        progress=sys.stderr.isatty(),
    )
    click.echo(summary.describe())
    if not summary.ok:
        raise ReplayError(f"{summary.delivery_errors:,} messages were not delivered")
