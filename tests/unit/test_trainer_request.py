"""Retrain requests into run specs, and the command's argument checks (no broker)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeline.cli.retrain import retrain
from pipeline.trainer import BadRequestError, RetrainSpec

RECORD = {
    "request_id": "r-1",
    "model_name": "fraud",
    "reason": "drift",
    "drift_event_ids": ["d-1", "d-2"],
    "window_start": 1_000,
    "window_end": 5_000,
    "requested_at": 9_000,
    "requested_by": "monitor",
}


def test_a_request_bounds_the_range_and_counts_labels_known_when_it_was_made() -> None:
    spec = RetrainSpec.from_record(RECORD)
    assert (spec.start_ms, spec.end_ms, spec.cutoff_ms) == (1_000, 5_000, 9_000)
    assert spec.drift_start_ms is None
    assert spec.trigger == "drift"
    lineage = spec.lineage()
    assert lineage["request_id"] == "r-1"
    assert lineage["drift_event_ids"] == ["d-1", "d-2"]
    assert lineage["requested_range"] == {
        "start": "1970-01-01T00:00:01Z",
        "end_exclusive": "1970-01-01T00:00:05Z",
    }


def test_a_drift_start_field_is_honoured_when_present() -> None:
    assert RetrainSpec.from_record({**RECORD, "drift_start": 3_000}).drift_start_ms == 3_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"request_id": " "}, "non-empty request_id"), ({"window_end": 1_000}, "is empty")],
)
def test_malformed_requests_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        RetrainSpec.from_record({**RECORD, **changes})


def test_manual_ids_are_unique() -> None:
    assert RetrainSpec.new_id() != RetrainSpec.new_id()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2018-05-01"], "--since need(s) --once"),
        (["--once", "--max-requests", "1"], "apply without --once"),
        (["--once", "--since", "2018-05-02", "--until", "2018-05-01"], "--since is after --until"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(retrain, args)
    assert result.exit_code == 2
    assert message in result.output


def test_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(retrain, ["--help"])
    assert result.exit_code == 0
    assert "fraud retrain --once" in result.output
    assert "fraud models promote challenger" in result.output
