"""``fraud models``: list, show, promote and roll back registered models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from pipeline.registry import Alias, AliasUpdate, ModelRegistry, ModelVersion, parse_ref
from pipeline.registry.refs import version_label
from pipeline.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])
_MAX_METRICS = 4


def _registry_options(function: F) -> F:
    function = click.option(
        "--name",
        default="fraud",
        show_default=True,
        help="Model name inside the registry (a qualified ref like fraud:v3 sets it too).",
    )(function)
    return click.option(
        "--registry",
        "registry_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Registry directory [default: FRAUD_REGISTRY_DIR, else models/ in the repository].",
    )(function)


def _announce_option(function: F) -> F:
    return click.option(
        "--announce/--no-announce",
        "announce_change",
        default=True,
        show_default=True,
        help="Publish the new state on the model-control topic so running scorers switch.",
    )(function)


def _open(registry_dir: Path | None, name: str, ref: str | None = None) -> ModelRegistry:
    settings = load_settings(registry_dir=registry_dir)
    qualified = parse_ref(ref).name if ref is not None else None
    return ModelRegistry(settings.registry_dir, qualified or name)


@click.group(name="models")
def models() -> None:
    """Inspect and manage the model registry.

    Every trained model is an immutable, numbered version (v1, v2, ...) with its
    sha256, feature list, training data range, metrics and lineage. The alias
    'champion' is the model scorers use; 'challenger' is a candidate under test.
    A REF is champion, challenger, latest, v3, 3 or fraud:v3.

    \b
    Examples:
      fraud models list
      fraud models show champion
      fraud models promote v4 --alias challenger --reason "retrained on May"
      fraud models promote challenger --reason "won the shadow test"
      fraud models rollback --reason "alert volume doubled"
    """


@models.command(name="list")
@_registry_options
@click.option("--json", "as_json", is_flag=True, help="Print the versions as a JSON array.")
def list_command(registry_dir: Path | None, name: str, as_json: bool) -> None:
    """List every registered version with its aliases, data range and key metrics.

    \b
    Example:
      fraud models list --registry /srv/models
    """
    registry = _open(registry_dir, name)
    versions = registry.list_versions()
    state = registry.aliases()
    if as_json:
        rows = [{**dict(v.metadata), "aliases": state.aliases_of(v.version)} for v in versions]
        click.echo(json.dumps(rows, indent=2))
        return
    if not versions:
        click.echo(f"no models registered in {registry.directory}")
        return
    table = [("VERSION", "CREATED", "ALIASES", "DATA RANGE", "METRICS")]
    for version in versions:
        table.append(
            (
                version.label,
                _short_time(version.created_at),
                ",".join(state.aliases_of(version.version)) or "-",
                f"{version.data_range[0]} .. {version.data_range[1]}",
                _key_metrics(version),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


@models.command()
@click.argument("ref")
@_registry_options
def show(ref: str, registry_dir: Path | None, name: str) -> None:
    """Print the metadata of REF as JSON, with the aliases pointing at it.

    \b
    Examples:
      fraud models show champion
      fraud models show v3 | jq .metrics
    """
    click.echo(json.dumps(_open(registry_dir, name, ref).show(ref), indent=2))


@models.command()
@click.argument("ref")
@_registry_options
@click.option(
    "--alias",
    type=click.Choice(["champion", "challenger"]),
    default="champion",
    show_default=True,
    help="Which alias to point at REF.",
)
@click.option("--reason", default="", help="Why; recorded in the alias history.")
@_announce_option
def promote(
    ref: str, registry_dir: Path | None, name: str, alias: str, reason: str, announce_change: bool
) -> None:
    """Point an alias at REF after checking its artifact's sha256.

    The old champion is remembered for rollback; promoting the challenger to
    champion clears the challenger.

    \b
    Examples:
      fraud models promote v4 --alias challenger --reason "retrained on May"
      fraud models promote challenger --reason "better precision in shadow mode"
    """
    registry = _open(registry_dir, name, ref)
    update = registry.promote(ref, alias=cast(Alias, alias), reason=reason)
    label = version_label(update.state.get(cast(Alias, alias)))
    _report(update, f"{registry.name} {alias} already points at {label}; nothing changed")
    _announce(update, registry_dir, announce_change, reason)


@models.command()
@_registry_options
@click.option("--reason", default="", help="Why; recorded in the alias history.")
@_announce_option
def rollback(registry_dir: Path | None, name: str, reason: str, announce_change: bool) -> None:
    """Restore the previous champion; run again to go further back.

    Running scorers switch back between two batches (via the model-control topic).

    \b
    Example:
      fraud models rollback --reason "false positives doubled after v5"
    """
    update = _open(registry_dir, name).rollback(reason=reason)
    _report(update, "nothing changed")
    _announce(update, registry_dir, announce_change, reason)


@models.command()
@_registry_options
def history(registry_dir: Path | None, name: str) -> None:
    """Print every alias move, oldest first, one JSON object per line.

    \b
    Example:
      fraud models history | tail -5
    """
    for event in _open(registry_dir, name).history():
        click.echo(json.dumps(event.to_json()))


def _announce(update: AliasUpdate, registry_dir: Path | None, enabled: bool, reason: str) -> None:
    """Tell running scorers (model-control topic) about a changed champion."""
    if not enabled or not update.changed:
        return
    from pipeline.control import announce

    settings = load_settings(registry_dir=registry_dir)
    record = announce(settings, update.name, update.state, reason)
    click.echo(
        f"announced {update.name} champion {record['champion_version']} on "
        f"{settings.topics.model_control}"
    )


def _report(update: AliasUpdate, unchanged: str) -> None:
    if not update.changed:
        click.echo(unchanged)
    for event in update.events:
        click.echo(f"{update.name} {event.describe()} ({event.action})")


def _short_time(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _key_metrics(version: ModelVersion) -> str:
    shown = [
        f"{key}={value:.4g}"
        for key, value in version.metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return " ".join(shown[:_MAX_METRICS]) or "-"
