"""The `fraud` entry point: help that teaches, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import COMMANDS, cli


def run_fraud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_top_level_help_lists_commands() -> None:
    result = run_fraud("--help")
    assert result.returncode == 0
    assert "Real-time fraud detection" in result.stdout
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert name in result.stdout


def test_unknown_command_is_one_line_and_non_zero() -> None:
    result = run_fraud("no-such-command")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no-such-command" in result.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_available_subcommand_has_help(name: str) -> None:
    if name not in cli.list_commands(None):  # type: ignore[arg-type]
        pytest.fail(f"command {name} is listed but its module is missing")
    result = run_fraud(name, "--help")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 4


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_option_is_one_line(name: str) -> None:
    result = run_fraud(name, "--definitely-not-an-option")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "definitely-not-an-option" in lines[0]
