"""``fraud models``: list, show, promote, rollback, history and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipeline.cli import main
from pipeline.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(80, 2))
    booster = xgb.train(
        {"max_depth": 2, "nthread": 1},
        xgb.DMatrix(features, label=(features[:, 1] > 0).astype(int)),
        2,
    )
    registry = ModelRegistry(tmp_path / "models")
    for month in ("04", "05", "06"):
        registry.register(
            booster,
            features=["amount", "hour"],
            params={"max_depth": 2},
            data_range=(f"2018-{month}-01", f"2018-{month}-28"),
            metrics={"auc_roc": 0.8712, "average_precision": 0.69, "note": "text"},
        )
    return registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["models", *args])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_list_shows_versions_aliases_range_metrics(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v2")
    registry.promote("v3", alias="challenger")
    code, out, _ = run(capsys, "list", "--registry", str(registry.root))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "ALIASES", "DATA", "RANGE", "METRICS"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2", "v3"]
    assert " champion " in lines[2] and " challenger " in lines[3]
    assert "2018-05-01 .. 2018-05-28" in lines[2]
    assert "auc_roc=0.8712 average_precision=0.69" in lines[1] and "note" not in lines[1]

    code, out, _ = run(capsys, "list", "--json", "--registry", str(registry.root))
    rows = json.loads(out)
    assert [(r["version"], r["aliases"]) for r in rows] == [
        (1, []),
        (2, ["champion"]),
        (3, ["challenger"]),
    ]


def test_list_empty_and_settings_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_REGISTRY_DIR", str(tmp_path / "env-models"))
    code, out, _ = run(capsys, "list")
    assert (
        code == 0 and out.strip() == f"no models registered in {tmp_path / 'env-models' / 'fraud'}"
    )


def test_show_prints_metadata_json(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1")
    code, out, _ = run(capsys, "show", "fraud:champion", "--registry", str(registry.root))
    shown = json.loads(out)
    assert code == 0
    assert shown["version"] == 1 and shown["aliases"] == ["champion"]
    assert shown["features"] == ["amount", "hour"] and len(shown["artifact"]["sha256"]) == 64


def test_promote_then_rollback(registry: ModelRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--registry", str(registry.root), "--no-announce"]
    assert run(capsys, "promote", "v1", *where)[1] == "fraud champion: none -> v1 (promote)\n"
    run(capsys, "promote", "v2", "--alias", "challenger", "--reason", "May data", *where)
    code, out, _ = run(capsys, "promote", "challenger", "--reason", "won", *where)
    assert code == 0
    assert out.splitlines() == [
        "fraud champion: v1 -> v2 (promote)",
        "fraud challenger: v2 -> none (clear)",
    ]
    assert "already points at v2" in run(capsys, "promote", "2", *where)[1]
    code, out, _ = run(capsys, "rollback", "--reason", "alerts doubled", *where)
    assert (code, out) == (0, "fraud champion: v2 -> v1 (rollback)\n")
    assert registry.aliases().champion == 1

    code, out, _ = run(capsys, "history", *where[:2])
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["from"], e["to"], e["reason"]) for e in events][-1] == (2, 1, "alerts doubled")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "v9"], "no model v9: registry 'fraud' has 3 version(s): v1, v2, v3"),
        (["show", "nonsense"], "bad model reference 'nonsense'"),
        (["promote", "challenger"], "alias 'challenger' is not set"),
        (["show", "other:v1"], "the registry 'other' is empty"),
        (["rollback"], "nothing to roll back: no champion has been set"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, *args, "--registry", str(registry.root))
    assert code == 1 and out == ""
    assert err.startswith("fraud: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_alias_choice_is_a_usage_error(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "promote", "v1", "--alias", "boss", "--registry", str(registry.root))
    assert code == 2 and err.count("\n") == 1


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ([], ["list"], ["show"], ["promote"], ["rollback"]):
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0 and "fraud models" in out
