"""``fraud backtest``: replay history through registered models; HTML report and JSON summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.cli._modeling import DATE, as_date, progress_enabled


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Labelled transactions (.parquet, .csv, .csv.gz) with is_fraud.",
)
@click.option(
    "--models",
    "model_refs",
    required=True,
    metavar="A,B,...",
    help="Comma-separated registry references: champion, challenger, latest, v3, ...",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write index.html and summary.json to (created; an earlier report "
    "there is replaced).",
)
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory (default: FRAUD_REGISTRY_DIR, ./models).",
)
@click.option(
    "--start",
    type=DATE,
    help="First day scored (default: 30 days after the data's first day, so every card "
    "and terminal window has a full history).",
)
@click.option("--end", type=DATE, help="Last day scored, inclusive (default: the data's last day).")
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Alerts the analysts can handle per day.",
)
@click.option(
    "--review-threshold",
    type=click.FloatRange(0, 1),
    help="Score at which a transaction is sent for review (default: FRAUD_POLICY__REVIEW_THRESHOLD, 0.5).",
)
@click.option(
    "--decline-threshold",
    type=click.FloatRange(0, 1),
    help="Score at which a transaction is declined (default: FRAUD_POLICY__DECLINE_THRESHOLD, 0.9).",
)
@click.option(
    "--shap-sample",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Scored rows sampled (seeded) for mean |SHAP| per feature; 0 skips it.",
)
@click.option(
    "--label-delay-days",
    type=click.IntRange(min=0),
    default=None,
    help="Days until labels are known (default: FRAUD_LABEL_DELAY_DAYS, 7).",
)
def backtest(
    data: Path,
    model_refs: str,
    report_dir: Path,
    registry_dir: Path | None,
    start: Any,
    end: Any,
    capacity: int,
    review_threshold: float | None,
    decline_threshold: float | None,
    shap_sample: int,
    label_delay_days: int | None,
) -> None:
    """Score history with each model and compare them in an HTML report.

    Every model scores the same transactions, with features from the same code
    the streaming scorer uses and through the same serving model. Cards already
    known compromised (a fraud older than the label delay) are left out, as in
    `fraud evaluate`. By default the first 30 days of the file only provide
    history and the rest is scored.

    The report directory gets index.html (metrics side by side; precision-recall
    and ROC curves, daily card precision@100, alerts per day against --capacity,
    score distributions, mean |SHAP| per feature; how each number is defined) and
    summary.json (per model: auc_roc, average_precision, card_precision_at_100,
    alerts_per_day, days_over_capacity_share, precision/recall at the alert
    threshold, version and parameters; plus daily series). Nothing is written
    unless the whole report is.

    \b
    Examples:
      fraud backtest --data tx.parquet --models champion,challenger --report reports/cc
      fraud backtest --data tx.parquet --models v1,v3 --start 2018-09-01 --end 2018-09-28 \\
                     --capacity 150 --review-threshold 0.3 --report reports/v1-v3
    """
    from pipeline.backtest import BacktestConfig, load_models, run_backtest, write_report
    from pipeline.backtest.report import check_target
    from pipeline.data import read_transactions
    from pipeline.policy import DecisionPolicy
    from pipeline.registry import ModelRegistry
    from pipeline.settings import load_settings

    settings = load_settings(registry_dir=registry_dir, label_delay_days=label_delay_days)
    policy = DecisionPolicy(
        settings.policy.review_threshold if review_threshold is None else review_threshold,
        settings.policy.decline_threshold if decline_threshold is None else decline_threshold,
    )
    first, last = as_date(start), as_date(end)
    if first is not None and last is not None and first > last:
        raise click.BadParameter(f"--start {first} is after --end {last}", param_hint="--start")
    check_target(report_dir)
    models = load_models(ModelRegistry(settings.registry_dir), model_refs.split(","))
    frame = read_transactions(data, require_labels=True)
    config = BacktestConfig(
        start=first,
        end=last,
        capacity=capacity,
        policy=policy,
        shap_sample=shap_sample,
        label_delay_days=settings.label_delay_days,
    )
    result = run_backtest(frame, models, config, source=data.name, progress=progress_enabled())
    index = write_report(result, report_dir)
    window = result.window
    click.echo(
        f"backtest {window.start}..{window.end}: {window.scored:,} transactions, "
        f"{window.frauds:,} frauds"
    )
    for model in result.models:
        m = model.metrics
        click.echo(
            f"  {model.name:<24} AUC ROC {m['auc_roc']:.4f}  AP {m['average_precision']:.4f}  "
            f"CP@100 {m['card_precision_at_100']:.4f}  alerts/day {model.daily_alerts.mean():.1f}"
        )
    click.echo(f"report: {index}")
