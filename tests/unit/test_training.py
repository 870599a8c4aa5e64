"""Training, explicit params, reason codes and the train/evaluate commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.features import FEATURE_NAMES
from pipeline.model import (
    DEFAULT_PARAMS,
    ModelError,
    TrainParams,
    predict,
    reason_codes,
    train_booster,
)


def test_params_are_explicit_and_validated() -> None:
    booster_params = DEFAULT_PARAMS.booster_params()
    for key in ("tree_method", "base_score", "max_depth", "eta", "scale_pos_weight"):
        assert key in booster_params
    assert TrainParams.from_json('{"max_depth": 5}').max_depth == 5
    with pytest.raises(ModelError, match="unknown"):
        TrainParams.from_json('{"depth": 5}')
    with pytest.raises(ModelError):
        TrainParams(learning_rate=0)


def test_train_predict_and_reason_codes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3)).astype(np.float32)
    y = (x[:, 1] > 1.2).astype(np.int8)
    names = ["amount", "card_amount_to_mean_30d", "is_night"]
    booster = train_booster(
        x, y, names, TrainParams(n_estimators=20, max_depth=2, learning_rate=0.3)
    )
    scores = predict(booster, x)
    assert scores.dtype == np.float32 and scores[y == 1].mean() > 0.8 > scores[y == 0].mean() + 0.5
    top = int(np.argmax(scores))
    reasons = reason_codes(booster, x[top : top + 1], top_k=2)[0]
    assert reasons[0].feature == "card_amount_to_mean_30d"
    assert reasons[0].text.startswith("amount far above the card's usual")
    assert reasons[0].contribution > 0


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.data import SimulatorConfig, simulate, write_transactions

    frame = simulate(SimulatorConfig(n_customers=300, n_terminals=600, n_days=50, seed=3))
    return write_transactions(frame, tmp_path_factory.mktemp("data") / "tx.parquet")


def test_train_register_then_evaluate_model(tmp_path: Path, small_file: Path) -> None:
    from pipeline.cli import cli

    data = small_file
    runner = CliRunner()
    registry = tmp_path / "models"
    result = runner.invoke(
        cli,
        [
            "train",
            "--data",
            str(data),
            "--register",
            "--registry",
            str(registry),
            "--alias",
            "champion",
            "--n-estimators",
            "20",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.output)
    assert trained["registered"].endswith("v1")
    assert trained["holdout"]["auc_roc"] > 0.5
    result = runner.invoke(
        cli,
        [
            "evaluate",
            "--data",
            str(data),
            "--model",
            "champion",
            "--registry",
            str(registry),
            "--start",
            "2018-05-01",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert set(metrics) >= {"auc_roc", "average_precision", "card_precision_at_100"}
    from pipeline.registry import ModelRegistry

    stored = ModelRegistry(registry).load("champion")
    assert list(stored.features) == list(FEATURE_NAMES)
    assert stored.version.params["tree_method"] == "exact"


def test_evaluate_reports_bad_input_on_one_line(small_file: Path) -> None:
    from pipeline.cli import cli

    data = small_file
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(data), "--protocol", "single"])
    assert result.exit_code != 0
    assert "no training or test rows" in str(result.exception)
