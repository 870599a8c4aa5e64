"""``fraud simulate``: write a simulated transactions file."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click
import pandas as pd

from pipeline.data.drift import DriftSpec, parse_drift_spec
from pipeline.data.errors import DriftSpecError
from pipeline.data.schema import FraudScenario


def _drift_option(ctx: click.Context, param: click.Parameter, value: str | None) -> DriftSpec:
    if value is None:
        return DriftSpec()
    try:
        return parse_drift_spec(value)
    except DriftSpecError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=183,
    show_default=True,
    help="Number of days to simulate.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same file.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file: .parquet, .csv or .csv.gz.",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Number of customers (one card each).",
)
@click.option(
    "--terminals",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Number of terminals.",
)
@click.option(
    "--start-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2018-04-01",
    show_default=True,
    help="First simulated day (UTC).",
)
@click.option(
    "--drift",
    "drift",
    metavar="SPEC",
    callback=_drift_option,
    help="Inject drift from a given day (grammar below).",
)
def simulate(
    days: int,
    seed: int,
    out: Path,
    customers: int,
    terminals: int,
    start_date: dt.datetime,
    drift: DriftSpec,
) -> None:
    """Simulate card transactions with labelled fraud and write them to a file.

    Follows the Fraud Detection Handbook simulator: the defaults reproduce its
    published dataset (5000 cards, 10000 terminals, 183 days from 2018-04-01,
    about 1.75 million transactions, 0.84% fraud). Fraud scenarios: 1 amount
    above 220; 2 compromised terminal (28 days); 3 compromised card (14 days,
    a third of its transactions at 5x the amount); 4 card testing (drift only).

    \b
    Drift SPEC: KIND@key=value,... ; several kinds separated by ';'.
    'day' (counted from 0) is required; defaults in brackets.
      covariate@day=D,share=[0.5],factor=[1.8]
          a share of customers spend factor x their usual amounts
          (amounts above 220 stay fraud, so scenario 1 grows)
      card_testing@day=D,cards_per_day=[10],probes=[5],probe_max=[2.0],
                  cashout_min=[100],cashout_max=[300]
          per day, cards get 2..probes tiny charges minutes apart at one
          terminal, then a cash-out; all fraud, scenario 4
      fraud_rate@day=D,factor=[3] (or terminals=N,customers=N)
          compromised terminals (2) and cards (3) per day multiplied

    \b
    Examples:
      fraud simulate --days 183 --seed 0 --out data/tx.parquet
      fraud simulate --days 120 --seed 7 --out data/drift.csv.gz \\
        --drift 'covariate@day=90,share=0.5,factor=1.8;card_testing@day=90;fraud_rate@day=90,factor=3'
    """
    from pipeline.data.io import file_format, write_transactions
    from pipeline.data.simulator import SimulatorConfig
    from pipeline.data.simulator import simulate as run_simulation

    file_format(out)  # fail on a bad extension before the work, not after
    config = SimulatorConfig(
        n_customers=customers,
        n_terminals=terminals,
        n_days=days,
        start_date=start_date.date(),
        seed=seed,
        drift=drift,
    )
    began = time.perf_counter()
    frame = run_simulation(config, progress=sys.stderr.isatty())
    write_transactions(frame, out)
    click.echo(summary_line(frame, out, time.perf_counter() - began))


def summary_line(frame: pd.DataFrame, out: Path, seconds: float) -> str:
    """One line: transactions, frauds, fraud rate, per-scenario counts, time."""
    n = len(frame)
    frauds = int(frame["is_fraud"].sum())
    rate = frauds / n if n else 0.0
    counts = frame["fraud_scenario"].value_counts()
    per_scenario = ", ".join(
        f"{s.name.lower()}={int(counts.get(int(s), 0))}" for s in FraudScenario if s
    )
    return (
        f"wrote {out}: {n:,} transactions, {frauds:,} frauds ({rate:.2%}); "
        f"by scenario: {per_scenario}; {seconds:.1f} s"
    )
