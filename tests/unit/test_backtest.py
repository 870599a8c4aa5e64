"""``fraud backtest``: numbers against the metrics module, the report, the errors."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.backtest import (
    BacktestConfig,
    BacktestError,
    BacktestResult,
    load_models,
    run_backtest,
    summary,
    write_report,
)
from pipeline.backtest.report import render_html
from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION, feature_matrix
from pipeline.model import (
    TrainParams,
    average_precision,
    card_precision_at_k,
    protocols,
    train_booster,
)
from pipeline.model.metrics import auc_roc
from pipeline.model.protocols import day_numbers
from pipeline.policy import DecisionPolicy
from pipeline.registry import ModelRegistry

START = date(2018, 4, 11)  # the simulator starts 2018-04-01
END = date(2018, 5, 10)  # its 40th day
SECTIONS = ("header", "models", "metrics", "plots", "notes")
PLOTS = ("precision_recall", "roc", "card_precision", "alerts", "scores", "shap")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    from pipeline.data import SimulatorConfig, simulate

    return simulate(SimulatorConfig(n_customers=300, n_terminals=600, n_days=40, seed=5))


@pytest.fixture(scope="module")
def data_file(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.data import write_transactions

    return write_transactions(frame, tmp_path_factory.mktemp("data") / "tx.parquet")


@pytest.fixture(scope="module")
def registry(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """v1 champion and v2 challenger (tiny, trained on the first 15 days); v3 reads 3 features."""
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    x = feature_matrix(frame)
    train = day_numbers(frame["timestamp"]) < np.datetime64("2018-04-16", "D").astype(np.int64)
    y = frame["is_fraud"].to_numpy()
    for alias, params in (
        ("champion", TrainParams(n_estimators=5, max_depth=2, learning_rate=0.3)),
        ("challenger", TrainParams(n_estimators=12, max_depth=3, learning_rate=0.3)),
    ):
        booster = train_booster(x[train], y[train], FEATURE_NAMES, params)
        registry.register(
            booster,
            features=FEATURE_NAMES,
            params=params.to_dict(),
            data_range=("2018-04-01", "2018-04-15"),
            metrics={},
            feature_set_version=FEATURE_SET_VERSION,
            alias=alias,  # type: ignore[arg-type]
        )
    small = train_booster(x[train][:, :3], y[train], FEATURE_NAMES[:3], TrainParams(n_estimators=2))
    registry.register(
        small,
        features=FEATURE_NAMES[:3],
        params={},
        data_range=("2018-04-01", "2018-04-15"),
        metrics={},
    )
    return registry


@pytest.fixture(scope="module")
def result(frame: pd.DataFrame, registry: ModelRegistry) -> BacktestResult:
    config = BacktestConfig(
        start=START,
        capacity=12,
        policy=DecisionPolicy(0.5, 0.8),
        shap_sample=400,
    )
    return run_backtest(frame, load_models(registry, ["champion", "challenger"]), config)


def _direct(frame: pd.DataFrame, registry: ModelRegistry, ref: str) -> dict[str, Any]:
    """What the summary should say, computed without the backtest package."""
    days = day_numbers(frame["timestamp"])
    card = frame["card_id"].to_numpy(np.int64)
    fraud = frame["is_fraud"].to_numpy(np.int8)
    rows = protocols.test_mask(days, card, fraud, START, END + timedelta(days=1), 7)
    booster = registry.load(ref).booster
    scores = booster.inplace_predict(feature_matrix(frame)[rows])
    alerted = scores >= 0.5
    per_day = pd.Series(alerted).groupby(days[rows]).sum()
    y = fraud[rows].astype(bool)
    return {
        "rows": int(rows.sum()),
        "frauds": int(y.sum()),
        "auc_roc": auc_roc(y, scores),
        "average_precision": average_precision(y, scores),
        "card_precision_at_100": card_precision_at_k(days[rows], card[rows], y, scores, 100),
        "alerts_mean": float(per_day.mean()),
        "alerts_max": int(per_day.max()),
        "over_capacity": float((per_day > 12).mean()),
        "precision": float(y[alerted].mean()),
        "recall": float(alerted[y].mean()),
    }


def test_summary_matches_metrics_computed_directly(
    frame: pd.DataFrame, registry: ModelRegistry, result: BacktestResult
) -> None:
    doc = summary(result)
    assert list(doc["models"]) == ["champion", "challenger"]
    for ref, version in (("champion", "v1"), ("challenger", "v2")):
        expected = _direct(frame, registry, version)
        got = doc["models"][ref]
        assert doc["data"]["scored"] == expected["rows"]
        assert doc["data"]["frauds"] == expected["frauds"]
        for key in ("auc_roc", "average_precision", "card_precision_at_100"):
            assert got[key] == pytest.approx(expected[key], rel=1e-9), key
        assert got["alerts_per_day"] == {
            "mean": pytest.approx(expected["alerts_mean"]),
            "max": expected["alerts_max"],
        }
        assert got["days_over_capacity_share"] == pytest.approx(expected["over_capacity"])
        assert 0 < got["days_over_capacity_share"] < 1  # capacity 12 is exceeded on some days
        assert got["precision_at_alert_threshold"] == pytest.approx(expected["precision"])
        assert got["recall_at_alert_threshold"] == pytest.approx(expected["recall"])
        assert got["alert_threshold"] == 0.5
        assert got["model"]["version"] == version
        assert got["model"]["params"]["n_estimators"] in (5, 12)
        assert np.mean(got["daily"]["card_precision"]) == pytest.approx(
            got["card_precision_at_100"], rel=1e-12
        )
        assert set(got["mean_abs_shap"]) == set(FEATURE_NAMES) and got["shap_rows"] == 400
        assert max(got["mean_abs_shap"].values()) > 0
    assert doc["data"]["transactions"] > doc["data"]["scored"]  # known cards left out
    assert doc["data"]["days"] == (END - START).days + 1


def test_default_range_skips_the_first_30_days(
    frame: pd.DataFrame, registry: ModelRegistry
) -> None:
    models = load_models(registry, ["v2"])
    unexplained = run_backtest(frame, models, BacktestConfig(shap_sample=0))
    window = unexplained.window
    assert (window.start, window.end) == (date(2018, 5, 1), END)
    assert len(window.days) == 10
    assert unexplained.models[0].mean_abs_shap == {}
    assert "Not computed" in render_html(unexplained, {})


def test_cli_writes_the_report(data_file: Path, registry: ModelRegistry, tmp_path: Path) -> None:
    from pipeline.cli import cli

    report = tmp_path / "reports" / "cc"
    args = [
        "backtest", "--data", str(data_file), "--models", "champion,challenger",
        "--report", str(report), "--registry", str(registry.root), "--start", str(START),
        "--capacity", "12", "--review-threshold", "0.5", "--decline-threshold", "0.8",
        "--shap-sample", "400",
    ]  # fmt: skip
    outcome = CliRunner().invoke(cli, args)
    assert outcome.exit_code == 0, outcome.output
    assert "champion (v1)" in outcome.output and "report:" in outcome.output
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "summary.json"]
    assert sorted(p.name for p in report.parent.iterdir()) == ["cc"]  # no temporaries left
    doc = json.loads((report / "summary.json").read_text())
    assert doc["settings"]["capacity"] == 12 and doc["settings"]["decline_threshold"] == 0.8
    for model in doc["models"].values():
        for key in ("auc_roc", "average_precision", "card_precision_at_100"):
            assert 0 < model[key] <= 1
    html = (report / "index.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    images = re.findall(
        r'id="plot-(\w+)">\s*<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html
    )
    assert [key for key, _ in images] == list(PLOTS)
    for _, payload in images:
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"
    for text in (
        "fraud:v1",
        "fraud:v2",
        "AUC ROC",
        "Card precision@100",
        "capacity 12",
        "2018-04-11",
    ):
        assert text in html


def test_an_earlier_report_is_replaced_whole(
    result: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.backtest.report as report_module

    monkeypatch.setattr(report_module, "all_plots", lambda _: {})  # figures are tested above
    target = tmp_path / "report"
    target.mkdir()
    (target / "summary.json").write_text("{}")
    write_report(result, target)
    assert json.loads((target / "summary.json").read_text())["data"]["scored"] > 0
    assert "<img" not in (target / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporaries left


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert isinstance(exited.value.code, int)
    return exited.value.code, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--models", "champion,v9"], "no model v9"),
        (["--models", "v3"], "does not match the expected features"),
        (
            ["--models", "v1", "--start", "2019-01-01"],
            "no transactions to score between 2019-01-01",
        ),
        (["--models", "v1", "--start", "2018-05-02", "--end", "2018-05-01"], "is after --end"),
        (["--models", "v1,v1"], "given twice"),
        (["--models", " , "], "at least one model"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    data_file: Path,
    registry: ModelRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    report = tmp_path / "out" / "report"
    argv = ["backtest", "--data", str(data_file), "--registry", str(registry.root)]
    code, err = _fails(capsys, [*argv, "--report", str(report), *extra])
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not report.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_file_without_labels_is_refused(
    frame: pd.DataFrame, registry: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unlabelled = tmp_path / "unlabelled.csv"
    frame.drop(columns=["is_fraud", "fraud_scenario"]).head(50).to_csv(unlabelled, index=False)
    report = tmp_path / "report"
    code, err = _fails(
        capsys,
        ["backtest", "--data", str(unlabelled), "--models", "champion",
         "--registry", str(registry.root), "--report", str(report)],
    )  # fmt: skip
    assert code == 1 and "is_fraud" in err and len(err.strip().splitlines()) == 1
    assert not report.exists()


def test_foreign_report_directory_is_refused(
    data_file: Path, registry: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    code, err = _fails(
        capsys,
        ["backtest", "--data", str(data_file), "--models", "champion",
         "--registry", str(registry.root), "--report", str(tmp_path)],
    )  # fmt: skip
    assert code == 1 and "holds other files (notes.txt)" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_failure_while_writing_leaves_no_report(
    result: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.backtest.report as report_module

    def disk_full(temp: Path, directory: Path) -> None:
        raise OSError("disk full")

    target = tmp_path / "report"
    monkeypatch.setattr(report_module, "all_plots", lambda _: {})
    monkeypatch.setattr(report_module, "_replace", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_report(result, target)
    assert list(tmp_path.iterdir()) == []


def test_run_needs_labels_and_models(frame: pd.DataFrame, registry: ModelRegistry) -> None:
    models = load_models(registry, ["champion"])
    with pytest.raises(BacktestError, match="is_fraud"):
        run_backtest(frame.drop(columns=["is_fraud"]), models, BacktestConfig())
    with pytest.raises(BacktestError, match="no models"):
        run_backtest(frame, [], BacktestConfig())
    with pytest.raises(BacktestError, match="capacity"):
        BacktestConfig(capacity=0)


def test_entry_point_in_a_subprocess(data_file: Path, tmp_path: Path) -> None:
    """The real ``fraud`` entry point: one line on stderr, exit 1, nothing written."""
    command = [
        sys.executable, "-c", "from pipeline.cli import main; main()", "backtest",
        "--data", str(data_file), "--models", "champion", "--registry", str(tmp_path / "empty"),
        "--report", str(tmp_path / "report"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("fraud: error: cannot backtest model 'champion'")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    for text in ("Examples:", "--models", "30 days after the data's first day", "--capacity",
                 "--shap-sample", "summary.json"):  # fmt: skip
        assert text in out
