"""Options and helpers shared by ``fraud train`` and ``fraud evaluate``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.model.params import DEFAULT_PARAMS, TrainParams

F = TypeVar("F", bound=Callable[..., Any])

DATE = click.DateTime(formats=["%Y-%m-%d"])


def param_options(func: F) -> F:
    """``--params JSON`` plus one flag per common parameter."""
    options = [
        click.option(
            "--params",
            "params_json",
            metavar="JSON",
            help="XGBoost parameters as a JSON object, e.g. '{\"max_depth\": 4}'.",
        ),
        click.option("--n-estimators", type=click.IntRange(min=1), help="Number of trees."),
        click.option("--max-depth", type=click.IntRange(min=1), help="Tree depth."),
        click.option("--learning-rate", type=click.FloatRange(0, 1, min_open=True), help="eta."),
        click.option(
            "--tree-method", type=click.Choice(["exact", "approx", "hist"]), help="Tree method."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_params(params_json: str | None, **flags: Any) -> TrainParams:
    """Defaults, then the JSON object, then individual flags."""
    params = DEFAULT_PARAMS if params_json is None else TrainParams.from_json(params_json)
    changes = {key: value for key, value in flags.items() if value is not None}
    return params.replace(**changes) if changes else params


def as_date(value: Any) -> date | None:
    """A click DateTime value as a date."""
    return None if value is None else value.date()


def load_frame(path: Path) -> Any:
    """Read and validate a data file (labels required)."""
    from pipeline.data import read_transactions

    return read_transactions(path, require_labels=True)


def progress_enabled() -> bool:
    """Progress bars only on a terminal."""
    return sys.stderr.isatty()


def echo_json(payload: dict[str, object]) -> None:
    """Print one JSON object (floats rounded for reading, keys in insertion order)."""
    click.echo(json.dumps(_rounded(payload), indent=None))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
