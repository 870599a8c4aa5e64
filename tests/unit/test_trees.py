"""The compiled tree ensemble gives ``inplace_predict``'s scores, bit for bit, or is not used."""

from __future__ import annotations

import json
import logging
from typing import Any

import boosters
import numpy as np
import pytest
import xgboost as xgb

from pipeline.model import ModelError
from pipeline.registry import LoadedModel
from pipeline.scoring import ServingModel, trees
from pipeline.scoring.model import verified_ensemble
from pipeline.scoring.trees import CompiledEnsemble, compile_booster

N_FEATURES = 6


def _data(seed: int, rows: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaNs, a few repeated values (so cuts land on data) and a noisy label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 4) / 4
    x[:, 2] = rng.exponential(100.0, rows).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * 0.7 - np.isnan(x[:, 3]) * 0.8
    y = (signal + rng.normal(0.0, 0.8, rows) > 0.6).astype(np.float32)
    return x, y


def _train(seed: int, rounds: int, **params: Any) -> tuple[xgb.Booster, np.ndarray]:
    x, y = _data(seed)
    return boosters.train(x, y, seed, rounds, **params), x


def _xgboost_scores(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(matrix, validate_features=False), dtype=np.float32)


def _split_thresholds(booster: xgb.Booster) -> dict[int, np.ndarray]:
    """Every split threshold of the booster per feature, read from its JSON."""
    model = json.loads(bytes(booster.save_raw("json")))
    found: dict[int, list[float]] = {}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feature, cut in zip(
            tree["left_children"], tree["split_indices"], tree["split_conditions"], strict=True
        ):
            if left != -1:
                found.setdefault(feature, []).append(cut)
    return {feature: np.asarray(cuts, dtype=np.float32) for feature, cuts in found.items()}


def _at_thresholds(booster: xgb.Booster, x: np.ndarray, seed: int) -> np.ndarray:
    """Rows whose values sit exactly on split thresholds, and one float32 step either side."""
    rng = np.random.default_rng(seed)
    rows = x[rng.integers(0, len(x), 600)].copy()
    for feature, cuts in _split_thresholds(booster).items():
        rows[:200, feature] = rng.choice(cuts, 200)
        rows[200:400, feature] = np.nextafter(rng.choice(cuts, 200), np.float32(-np.inf))
        rows[400:, feature] = np.nextafter(rng.choice(cuts, 200), np.float32(np.inf))
    return rows


def _loaded(booster: xgb.Booster, n_features: int = N_FEATURES) -> LoadedModel:
    return boosters.loaded(booster, n_features)


@pytest.mark.parametrize(
    ("depth", "rounds", "base_score", "extra"),
    boosters.VARIANTS,
)
def test_scores_equal_xgboost_bit_for_bit(
    depth: int, rounds: int, base_score: float, extra: dict[str, Any]
) -> None:
    booster, x = _train(depth + rounds, rounds, max_depth=depth, base_score=base_score, **extra)
    compiled = compile_booster(booster, N_FEATURES)
    assert compiled is not None
    assert compiled.depth <= depth
    assert compiled.n_trees == booster.num_boosted_rounds() * extra.get("num_parallel_tree", 1)
    assert compiled.mismatch(booster) is None

    held_out, _ = _data(seed=99, rows=1000)
    for matrix in (x, held_out, _at_thresholds(booster, x, seed=depth)):
        np.testing.assert_array_equal(compiled.predict(matrix), _xgboost_scores(booster, matrix))


@pytest.mark.parametrize("objective", ["reg:logistic", "binary:logitraw"])
def test_other_logistic_objectives(objective: str) -> None:
    booster, x = _train(5, 30, objective=objective, max_depth=3, base_score=0.35)
    compiled = compile_booster(booster, N_FEATURES)
    assert compiled is not None
    np.testing.assert_array_equal(compiled.predict(x), _xgboost_scores(booster, x))


@pytest.fixture(scope="module")
def product_like() -> tuple[xgb.Booster, CompiledEnsemble, np.ndarray]:
    booster, x = _train(7, 100, max_depth=3, base_score=0.5, eta=0.1)
    compiled = compile_booster(booster, N_FEATURES)
    assert compiled is not None
    return booster, compiled, x


@pytest.mark.parametrize("rows", [0, 1, 2, 255, 256, 257, 513, 1200])
def test_batch_sizes_across_block_boundaries(
    product_like: tuple[xgb.Booster, CompiledEnsemble, np.ndarray], rows: int
) -> None:
    booster, compiled, x = product_like
    matrix = x[:rows]
    got = compiled.predict(matrix)
    assert got.shape == (rows,)
    assert got.dtype == np.float32
    if rows:
        np.testing.assert_array_equal(got, _xgboost_scores(booster, matrix))


def test_missing_infinite_and_other_layouts(
    product_like: tuple[xgb.Booster, CompiledEnsemble, np.ndarray],
) -> None:
    booster, compiled, x = product_like
    edge = x[:8].copy()
    edge[0] = np.nan
    edge[1] = np.inf
    edge[2] = -np.inf
    edge[3, ::2] = np.nan
    np.testing.assert_array_equal(compiled.predict(edge), _xgboost_scores(booster, edge))
    # float64, Fortran order and strided views are converted as xgboost converts them.
    wide = x[:300].astype(np.float64) + 1e-9
    np.testing.assert_array_equal(compiled.predict(wide), _xgboost_scores(booster, wide))
    fortran = np.asfortranarray(x[:300])
    np.testing.assert_array_equal(compiled.predict(fortran), _xgboost_scores(booster, fortran))
    strided = x[:600:2]
    np.testing.assert_array_equal(compiled.predict(strided), _xgboost_scores(booster, strided))


def test_probe_catches_a_threshold_one_ulp_off(
    product_like: tuple[xgb.Booster, CompiledEnsemble, np.ndarray],
) -> None:
    booster, compiled, _ = product_like
    thresholds = compiled.thresholds.copy()
    thresholds[0, 0] = np.nextafter(thresholds[0, 0], np.float32(np.inf))
    off = CompiledEnsemble(
        split_features=compiled.split_features,
        thresholds=thresholds,
        missing_right=compiled.missing_right,
        leaf_values=compiled.leaf_values,
        depth=compiled.depth,
        base_margin=compiled.base_margin,
        transform=compiled.transform,
        n_features=compiled.n_features,
    )
    problem = off.mismatch(booster)
    assert problem is not None and "probe rows differ" in problem


def test_probe_catches_a_wrong_default_direction(
    product_like: tuple[xgb.Booster, CompiledEnsemble, np.ndarray],
) -> None:
    booster, compiled, _ = product_like
    flipped = compiled.missing_right.copy()
    flipped[0, 0] = not flipped[0, 0]
    off = CompiledEnsemble(
        split_features=compiled.split_features,
        thresholds=compiled.thresholds,
        missing_right=flipped,
        leaf_values=compiled.leaf_values,
        depth=compiled.depth,
        base_margin=compiled.base_margin,
        transform=compiled.transform,
        n_features=compiled.n_features,
    )
    assert off.mismatch(booster) is not None


def test_wrong_column_count_is_an_error(
    product_like: tuple[xgb.Booster, CompiledEnsemble, np.ndarray],
) -> None:
    _, compiled, x = product_like
    with pytest.raises(ModelError, match="feature columns"):
        compiled.predict(x[:, :-1])
    with pytest.raises(ModelError, match="feature columns"):
        compiled.predict(x[0])


def _categorical_booster() -> tuple[xgb.Booster, np.ndarray]:
    x, y = _data(11)
    x[:, 0] = np.floor(np.abs(np.nan_to_num(x[:, 0])) * 3)
    data = xgb.DMatrix(
        x,
        label=y,
        feature_types=["c"] + ["q"] * (N_FEATURES - 1),
        enable_categorical=True,
    )
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "nthread": 1}
    return xgb.train(params, data, num_boost_round=10), x


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("multi:softprob", "objective 'multi:softprob'"),
        ("dart", "booster 'dart'"),
        ("reg:squarederror", "objective 'reg:squarederror'"),
        ("too deep", f"more than {trees.MAX_DEPTH} deep"),
        ("feature count", f"model has {N_FEATURES} features, serving {N_FEATURES + 1}"),
        ("categorical", "categorical splits"),
    ],
)
def test_unsupported_boosters_stay_with_xgboost(
    case: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    n_features = N_FEATURES
    if case == "multi:softprob":
        x, y = _data(3)
        booster = xgb.train(
            {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
            xgb.DMatrix(x, label=(y + np.isnan(x[:, 4])).astype(np.float32)),
            num_boost_round=5,
        )
    elif case == "dart":
        booster, x = _train(3, 10, booster="dart", max_depth=3, rate_drop=0.2)
    elif case == "reg:squarederror":
        booster, x = _train(3, 10, objective="reg:squarederror", max_depth=3)
    elif case == "too deep":
        booster, x = _train(3, 5, max_depth=trees.MAX_DEPTH + 3, min_child_weight=0.0)
    elif case == "feature count":
        booster, x = _train(3, 5, max_depth=3)
        n_features = N_FEATURES + 1
    else:
        booster, x = _categorical_booster()
    with caplog.at_level(logging.INFO, logger="pipeline.scoring.trees"):
        assert compile_booster(booster, n_features) is None
    assert reason in caplog.text

    if n_features == N_FEATURES:
        model = ServingModel.from_loaded(_loaded(booster, n_features))
        assert model.compiled is None
        expected = np.asarray(booster.inplace_predict(x), dtype=np.float64).reshape(-1)
        np.testing.assert_array_equal(model.predict(x), expected)


def test_serving_model_compiles_at_load_and_predicts_with_the_kernel() -> None:
    booster, x = _train(21, 100, max_depth=3, base_score=0.5, eta=0.1)
    model = ServingModel.from_loaded(_loaded(booster))
    assert model.compiled is not None
    assert model.compiled.mismatch(booster) is None
    expected = _xgboost_scores(booster, x).astype(np.float64)
    np.testing.assert_array_equal(model.predict(x), expected)
    assert model.predict(x[:0]).shape == (0,)
    # The kernel alone serves predict: a model without a booster still scores.
    kernel_only = ServingModel("fraud", "v3", None, model.features, "", compiled=model.compiled)  # type: ignore[arg-type]
    np.testing.assert_array_equal(kernel_only.predict(x), expected)
    # Contributions come from the compiled TreeSHAP tables (tests/unit/test_tree_shap.py).
    assert model.compiled.shap is not None
    assert model.contributions(x[:5]).shape == (5, N_FEATURES)


def test_serving_model_with_the_wrong_column_count_fails_loudly() -> None:
    booster, x = _train(22, 10, max_depth=3)
    model = ServingModel.from_loaded(_loaded(booster))
    for wrong in (x[:, :-1], np.hstack([x, x[:, :1]])):
        with pytest.raises(xgb.core.XGBoostError, match="Number of columns"):
            model.predict(wrong)


def test_kernel_that_disagrees_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster, x = _train(23, 20, max_depth=3)

    def off_by_a_little(matrix: np.ndarray, *args: Any) -> None:
        out = args[-1]
        out[:] = 0.5
        out[::7] = 0.75

    monkeypatch.setattr(trees, "_predict_kernel", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="pipeline.scoring.model"):
        assert verified_ensemble(booster, N_FEATURES, "fraud v9") is None
        model = ServingModel.from_loaded(_loaded(booster))
    assert model.compiled is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "fraud v9" in warnings[0].getMessage()
    assert "probe rows differ" in warnings[0].getMessage()
    expected = _xgboost_scores(booster, x).astype(np.float64)
    np.testing.assert_array_equal(model.predict(x), expected)
