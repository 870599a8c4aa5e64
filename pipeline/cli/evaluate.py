"""``fraud evaluate``: the handbook's protocols, or one registered model on a date range."""

from __future__ import annotations

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
    "--protocol",
    type=click.Choice(["single", "prequential"]),
    help="Train and test with the handbook's single split or 4 prequential folds.",
)
@click.option("--model", "model_ref", metavar="REF", help="Evaluate a registered model instead.")
@click.option("--start", type=DATE, help="With --model: first day evaluated (default: data start).")
@click.option("--end", type=DATE, help="With --model: last day evaluated, inclusive.")
@click.option(
    "--label-delay-days",
    type=click.IntRange(min=0),
    default=None,
    help="Days until labels are known (default: FRAUD_LABEL_DELAY_DAYS, 7).",
)
@param_options
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory (default: FRAUD_REGISTRY_DIR, ./models).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the contract).")
def evaluate(
    data: Path,
    protocol: str | None,
    model_ref: str | None,
    start: Any,
    end: Any,
    label_delay_days: int | None,
    params_json: str | None,
    n_estimators: int | None,
    max_depth: int | None,
    learning_rate: float | None,
    tree_method: str | None,
    registry_dir: Path | None,
    as_json: bool,
) -> None:
    """Measure AUC ROC, average precision and card precision@100.

    --protocol single trains on 7 days, waits the 7-day label delay and tests
    on the next 7 (dates at the handbook's offsets from the data's first day:
    2018-07-25 / 2018-08-08 for data starting 2018-04-01). --protocol
    prequential repeats that on 4 consecutive test weeks and reports the means,
    "std" and per-fold "folds". --model scores a registered model on a range.
    Cards already known compromised are left out of each test day.

    \b
    Examples:
      fraud evaluate --data tx.parquet --protocol prequential --json
      fraud evaluate --data tx.parquet --model champion --start 2018-09-01 --json
    """
    from pipeline.model.workflow import evaluate_booster, evaluate_protocol, prepare
    from pipeline.settings import load_settings

    if (protocol is None) == (model_ref is None):
        raise click.UsageError("give exactly one of --protocol and --model")
    if protocol is not None and (start is not None or end is not None):
        raise click.UsageError("--start/--end apply to --model only")
    settings = load_settings(registry_dir=registry_dir, label_delay_days=label_delay_days)
    delay = settings.label_delay_days
    params = build_params(
        params_json,
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        tree_method=tree_method,
    )
    frame = load_frame(data)
    with tqdm(total=1, desc="features", disable=not progress_enabled(), leave=False) as bar:
        dataset = prepare(frame, delay)
        bar.update()
    if protocol is not None:
        result = evaluate_protocol(dataset, protocol, params, delay, progress=progress_enabled())
    else:
        from pipeline.registry import ModelRegistry

        loaded = ModelRegistry(settings.registry_dir).load(str(model_ref))
        result = evaluate_booster(
            dataset, loaded.booster, tuple(loaded.features), as_date(start), as_date(end), delay
        )
        result["model"] = loaded.version.ref
    if as_json:
        echo_json(result)
        return
    line = (
        f"AUC ROC {result['auc_roc']:.4f}  AP {result['average_precision']:.4f}  "
        f"CP@100 {result['card_precision_at_100']:.4f}"
    )
    std = result.get("std")
    if isinstance(std, dict):
        line += (
            f"  (std {std['auc_roc']:.4f} / {std['average_precision']:.4f} / "
            f"{std['card_precision_at_100']:.4f} over {len(result['folds'])} folds)"  # type: ignore[arg-type]
        )
    click.echo(line)
