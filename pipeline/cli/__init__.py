"""The ``fraud`` command.

Subcommands live one per module under :mod:`pipeline.cli` and are imported
lazily, so ``fraud --help`` stays fast and a command's heavy imports (xgboost,
faust) are paid only when that command runs.

Errors are reported as one line on stderr with a non-zero exit: 2 for a bad
argument, 1 for an expected failure (:class:`pipeline.errors.FraudError`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

import click

from pipeline.errors import FraudError

# name -> (module, attribute, one-line summary shown by `fraud --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "kafka": ("pipeline.cli.kafka", "kafka", "Run a local Apache Kafka (KRaft) without Docker."),
    "topics": ("pipeline.cli.topics", "topics", "Create the pipeline's topics (idempotent)."),
    "simulate": ("pipeline.cli.simulate", "simulate", "Simulate card transactions with fraud."),
    "train": ("pipeline.cli.train", "train", "Train an XGBoost model on a data file."),
    "evaluate": ("pipeline.cli.evaluate", "evaluate", "Evaluate with the handbook's protocols."),
    "backtest": (
        "pipeline.cli.backtest",
        "backtest",
        "Replay history through models; HTML report.",
    ),
    "models": ("pipeline.cli.models", "models", "Inspect and manage the model registry."),
    "replay": ("pipeline.cli.replay", "replay", "Produce a data file to Kafka, optionally paced."),
    "score": ("pipeline.cli.score", "score", "Run one streaming scorer worker."),
    "alerts": ("pipeline.cli.alerts", "alerts", "Tail the fraud-alerts topic, human-readable."),
    "retrain": (
        "pipeline.cli.retrain",
        "retrain",
        "Train a challenger from served features and mature labels.",
    ),
    "monitor": ("pipeline.cli.monitor", "monitor", "Watch drift and quality; request retraining."),
    "demo": ("pipeline.cli.demo", "demo", "The whole story end to end on a local broker."),
    "terminal-features": (
        "pipeline.cli.terminal_features",
        "terminal_features",
        "Publish delayed per-terminal aggregates (nearline job).",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _, _) in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="fraud-pipeline", prog_name="fraud")
def cli() -> None:
    """Real-time fraud detection on Kafka.

    Score every card transaction with the active XGBoost model, publish a
    decision for each and an alert for the suspicious ones, watch drift, and
    roll new models out safely.

    Configuration comes from flags or FRAUD_* environment variables
    (e.g. FRAUD_KAFKA_BOOTSTRAP_SERVERS, FRAUD_REGISTRY_DIR).

    \b
    Typical first run:
      fraud kafka up
      fraud topics create
      fraud simulate --days 60 --seed 7 --out data/tx.parquet
      fraud train --data data/tx.parquet --register
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one-line errors."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name="fraud", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("fraud: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "fraud"
        click.echo(f"{where}: error: {_one_line(exc.format_message())} (see --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"fraud: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code or 1)
    except FraudError as exc:
        click.echo(f"fraud: error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("fraud: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


if __name__ == "__main__":  # pragma: no cover
    main()
