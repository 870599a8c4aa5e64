"""The ``fraud terminal-features`` command's surface (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipeline.cli.terminal_features import terminal_features
from pipeline.errors import FraudError


def test_help_explains_and_shows_examples() -> None:
    result = CliRunner().invoke(terminal_features, ["--help"])
    assert result.exit_code == 0
    assert "matured" in result.output
    assert "fraud terminal-features --data" in result.output


def test_bad_arguments_are_refused() -> None:
    result = CliRunner().invoke(terminal_features, ["--retention-days", "7"])
    assert result.exit_code == 2
    assert "--retention-days" in result.output


def test_missing_data_file_is_an_expected_failure(tmp_path: Path) -> None:
    result = CliRunner().invoke(terminal_features, ["--data", str(tmp_path / "none.parquet")])
    assert result.exit_code != 0
    assert isinstance(result.exception, FraudError)
    assert "no such file" in str(result.exception)
