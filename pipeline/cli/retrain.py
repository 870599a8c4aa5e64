"""``fraud retrain``: train a challenger from served features and mature labels."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import click

from pipeline.cli._modeling import DATE, build_params, param_options, progress_enabled

_DAY = dt.timedelta(days=1)


@click.command(
    "retrain",
    context_settings={"max_content_width": 100},
    epilog="""\b
Examples:
  fraud retrain                                   # serve requests from the monitor, forever
  fraud retrain --once                            # train now on everything labelled so far
  fraud retrain --once --since 2018-08-01 --until 2018-09-15 --drift-start 2018-08-20
  fraud retrain --once --dry-run --json           # judge a challenger, register nothing
  fraud retrain --once --as-of 2018-09-01T00:00   # only labels known at that time
  fraud retrain --max-requests 1 --idle-timeout 30
  fraud models promote challenger --reason "won"  # promotion stays a person's call
""",
)
@click.option("--once", is_flag=True, help="Run one retrain now instead of serving requests.")
@click.option(
    "--since", type=DATE, metavar="DATE", help="With --once: first transaction day to read."
)
@click.option(
    "--until",
    type=DATE,
    metavar="DATE",
    help="With --once: last transaction day to read (inclusive).",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    metavar="DATETIME",
    help="With --once: labels count only if known by then (UTC) [default: now].",
)
@click.option(
    "--drift-start",
    type=DATE,
    metavar="DATE",
    help="With --once: train on days from this one only, if they hold enough frauds.",
)
@click.option(
    "--request-id",
    help="With --once: id recorded in the lineage; a rerun with the same id does nothing.",
)
@click.option(
    "--name", default="fraud", show_default=True, help="With --once: model name in the registry."
)
@click.option(
    "--holdout-days",
    type=click.IntRange(1),
    default=7,
    show_default=True,
    help="Most recent mature days both models are judged on.",
)
@click.option(
    "--train-days",
    type=click.IntRange(1),
    default=21,
    show_default=True,
    help="Training days before the holdout (when post-drift days are not enough).",
)
@click.option(
    "--min-post-drift-frauds",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Labelled frauds needed to train on post-drift days only.",
)
@param_options
@click.option("--dry-run", is_flag=True, help="Train and judge, but register and announce nothing.")
@click.option(
    "--announce/--no-announce",
    "announce_changes",
    default=True,
    show_default=True,
    help="Publish the new challenger on the model-control topic.",
)
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory [default: FRAUD_REGISTRY_DIR, else models/].",
)
@click.option(
    "--group",
    "group_id",
    default="fraud-retrain",
    show_default=True,
    help="Consumer group for the retrain-requests topic.",
)
@click.option("--max-requests", type=click.IntRange(1), help="Stop after this many requests.")
@click.option(
    "--idle-timeout", type=click.FloatRange(0.1), help="Stop after this many seconds without one."
)
@click.option("--json", "as_json", is_flag=True, help="Print each outcome as one JSON line.")
def retrain(
    once: bool,
    since: dt.datetime | None,
    until: dt.datetime | None,
    as_of: dt.datetime | None,
    drift_start: dt.datetime | None,
    request_id: str | None,
    name: str,
    holdout_days: int,
    train_days: int,
    min_post_drift_frauds: int,
    params_json: str | None,
    n_estimators: int | None,
    max_depth: int | None,
    learning_rate: float | None,
    tree_method: str | None,
    dry_run: bool,
    announce_changes: bool,
    registry_dir: Path | None,
    group_id: str,
    max_requests: int | None,
    idle_timeout: float | None,
    as_json: bool,
) -> None:
    """Train a challenger on the features scorers served and the labels now mature.

    Reads the decisions topic (each decision carries the feature vector that
    was served) and the labels topic up to their current ends, keeps whole
    days whose labels are past the label delay, trains on recent days
    (post-drift days only, when a drift start is known and they hold enough
    frauds), and judges the new model and the champion on the most recent
    mature days. The new model is registered as 'challenger' with its lineage
    and both models' metrics, and announced on model-control. The champion is
    never changed: promote with `fraud models promote challenger`.

    Without --once it serves the retrain-requests topic (the monitor asks
    there when it sees drift); a request already handled is skipped.
    """
    from pipeline.settings import load_settings
    from pipeline.trainer import RetrainJob, RetrainSpec, WindowPolicy

    one_shot: dict[str, object] = {"--since": since, "--until": until, "--as-of": as_of}
    one_shot.update({"--drift-start": drift_start, "--request-id": request_id})
    misplaced = [flag for flag, value in one_shot.items() if value is not None]
    if misplaced and not once:
        raise click.UsageError(f"{', '.join(misplaced)} need(s) --once")
    if once and (max_requests is not None or idle_timeout is not None):
        raise click.UsageError("--max-requests and --idle-timeout apply without --once")
    if since is not None and until is not None and since > until:
        raise click.BadParameter("--since is after --until", param_hint="--since")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(registry_dir=registry_dir)
    job = RetrainJob(
        settings,
        policy=WindowPolicy(holdout_days, train_days, min_post_drift_frauds),
        params=build_params(
            params_json,
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            tree_method=tree_method,
        ),
        progress=progress_enabled(),
        announce_changes=announce_changes,
        dry_run=dry_run,
    )
    if once:
        spec = RetrainSpec(
            request_id=request_id or RetrainSpec.new_id(),
            model_name=name,
            trigger="manual",
            start_ms=_ms(since),
            end_ms=_ms(until + _DAY) if until is not None else None,
            drift_start_ms=_ms(drift_start),
            requested_by="cli",
            **({"cutoff_ms": _ms(as_of)} if as_of is not None else {}),
        )
        _echo(job.run(spec).to_json(), as_json)
        return

    stop = {"requested": False, "count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["count"] += 1
        if stop["count"] > 1:
            os._exit(130)
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    outcomes = job.serve(
        group_id,
        max_requests=max_requests,
        idle_timeout_s=idle_timeout,
        on_outcome=lambda outcome: _echo(outcome.to_json(), as_json),
        should_stop=lambda: bool(stop["requested"]),
    )
    click.echo(f"served {len(outcomes)} retrain request(s)", err=True)


def _ms(value: dt.datetime | None) -> Any:
    if value is None:
        return None
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


def _echo(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload, default=str))
        return
    status = payload["status"]
    head = f"{payload['request_id']}: {status}"
    if "version" in payload:
        head += f" {payload['version']}"
    if payload.get("message"):
        head += f" ({payload['message']})"
    click.echo(head)
    if "train" in payload:
        click.echo(
            f"  trained on {payload['train']['start']}..{payload['train']['end']} "
            f"({payload['window_note']}); holdout {payload['holdout']['start']}.."
            f"{payload['holdout']['end']}"
        )
    for role in ("challenger", "champion"):
        metrics = payload.get(f"{role}_metrics")
        if metrics:
            label = payload.get("champion_version") if role == "champion" else "new"
            shown = "  ".join(f"{key} {value:.4f}" for key, value in metrics.items())
            click.echo(f"  {role} ({label}): {shown}")
