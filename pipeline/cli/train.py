"""``fraud train``: train an XGBoost model on a data file, optionally register it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from pipeline.cli._modeling import (
    DATE,
    as_date,
    build_params,
    echo_json,
    load_frame,
    param_options,
    progress_enabled,
)


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Labelled transactions (.parquet, .csv, .csv.gz).",
)
@click.option(
    "--train-start", type=DATE, help="First training day (default: 3 weeks before --train-end)."
)
@click.option(
    "--train-end",
    type=DATE,
    help="Last training day, inclusive (default: leaves the label delay and a 7-day holdout).",
)
@click.option(
    "--label-delay-days",
    type=click.IntRange(min=0),
    default=None,
    help="Days until labels are known (default: FRAUD_LABEL_DELAY_DAYS, 7).",
)
@param_options
@click.option("--register", is_flag=True, help="Store the model in the registry.")
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory (default: FRAUD_REGISTRY_DIR, ./models).",
)
@click.option(
    "--alias",
    type=click.Choice(["champion", "challenger"]),
    help="With --register: also point this alias at the new version.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def train(
    data: Path,
    train_start: Any,
    train_end: Any,
    label_delay_days: int | None,
    params_json: str | None,
    n_estimators: int | None,
    max_depth: int | None,
    learning_rate: float | None,
    tree_method: str | None,
    register: bool,
    registry_dir: Path | None,
    alias: str | None,
    as_json: bool,
) -> None:
    """Train an XGBoost fraud model on a date range of a data file.

    Features are computed over the whole file (each transaction sees only its
    past; terminal fraud rates only labels older than the label delay). The
    model is tested on the 7 days that follow the label delay after the
    training range, when the file covers them, and the metrics are printed.
    With --register the model, its feature list, parameters, data range,
    metrics and lineage go into the registry.

    \b
    Example:
      fraud train --data tx.parquet --train-start 2018-08-15 --train-end 2018-09-04 \\
                  --register --alias challenger
    """
    from pipeline.model.workflow import default_train_range, prepare, train_model
    from pipeline.settings import load_settings

    settings = load_settings(registry_dir=registry_dir, label_delay_days=label_delay_days)
    if alias is not None and not register:
        raise click.UsageError("--alias needs --register")
    params = build_params(
        params_json,
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        tree_method=tree_method,
    )
    delay = settings.label_delay_days
    frame = load_frame(data)
    steps = tqdm(total=2, desc="features", disable=not progress_enabled(), leave=False)
    dataset = prepare(frame, delay)
    steps.update()
    steps.set_description("training")
    start, end = default_train_range(dataset, delay)
    end = as_date(train_end) or end
    start = as_date(train_start) or (end - timedelta(days=20) if train_end is not None else start)
    result = train_model(dataset, start, end, params, delay)
    steps.update()
    steps.close()
    holdout = result.holdout.to_dict() if result.holdout is not None else None
    payload: dict[str, object] = {
        "train_range": f"{start}..{end}",
        "params": params.to_dict(),
        "holdout": holdout,
    }
    if register:
        from pipeline.features import FEATURE_SET_VERSION
        from pipeline.registry import ModelRegistry

        registry = ModelRegistry(settings.registry_dir)
        metrics = dict(result.holdout.metrics) if result.holdout is not None else {}
        version = registry.register(
            result.booster,
            features=list(dataset.feature_names),
            params=params.to_dict(),
            data_range=(str(start), str(end)),
            metrics=metrics,
            lineage={
                "data_file": str(data.resolve()),
                "label_delay_days": delay,
                "holdout": holdout,
                "trained_by": "fraud train",
            },
            feature_set_version=FEATURE_SET_VERSION,
            alias=alias,  # type: ignore[arg-type]
        )
        payload["registered"] = version.ref
    if as_json:
        echo_json(payload)
        return
    click.echo(f"trained on {start}..{end} ({params.n_estimators} trees, depth {params.max_depth})")
    if result.holdout is not None:
        m = result.holdout.metrics
        click.echo(
            f"holdout {holdout['test'] if holdout else ''}: AUC ROC {m['auc_roc']:.4f}  "
            f"AP {m['average_precision']:.4f}  CP@100 {m['card_precision_at_100']:.4f}"
        )
    else:
        click.echo("no holdout: the data ends before a label delay and a week after training")
    if "registered" in payload:
        click.echo(f"registered {payload['registered']}" + (f" as {alias}" if alias else ""))
