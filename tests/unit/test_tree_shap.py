"""Compiled TreeSHAP gives XGBoost's ``pred_contribs`` bit for bit, or is not used."""

from __future__ import annotations

import dataclasses
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
from pipeline.scoring.trees import CompiledEnsemble, ShapEnsemble, compile_booster

N_FEATURES = 7
#: Columns 5 and 6 are never split on: one is constant, the other always missing.
UNUSED = (5, 6)


def _data(seed: int, rows: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaNs, repeated values (so cuts land on data), two useless columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 4) / 4
    x[:, 2] = rng.exponential(100.0, rows).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:, 5] = 1.0
    x[:, 6] = np.nan
    signal = (
        np.nan_to_num(x[:, 0])
        + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 4])
        - np.isnan(x[:, 3]) * 0.8
        + (np.nan_to_num(x[:, 2]) > 150) * 0.5
    )
    y = (signal + rng.normal(0.0, 0.8, rows) > 0.6).astype(np.float32)
    return x, y


def _train(seed: int, rounds: int, **params: Any) -> tuple[xgb.Booster, np.ndarray]:
    x, y = _data(seed)
    return boosters.train(x, y, seed, rounds, **params), x


def _xgboost_contributions(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    contribs = booster.predict(xgb.DMatrix(matrix, nthread=1), pred_contribs=True)
    return np.asarray(contribs, dtype=np.float32)


def _edge_rows(booster: xgb.Booster, x: np.ndarray, seed: int) -> np.ndarray:
    """Rows on split thresholds, one float32 step either side, and all or half missing."""
    model = json.loads(bytes(booster.save_raw("json")))
    cuts: dict[int, list[float]] = {}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feature, cut in zip(
            tree["left_children"], tree["split_indices"], tree["split_conditions"], strict=True
        ):
            if left != -1:
                cuts.setdefault(feature, []).append(cut)
    rng = np.random.default_rng(seed)
    rows = x[rng.integers(0, len(x), 600)].copy()
    for feature, values in cuts.items():
        exact = np.asarray(values, dtype=np.float32)
        rows[:200, feature] = rng.choice(exact, 200)
        rows[200:400, feature] = np.nextafter(rng.choice(exact, 200), np.float32(-np.inf))
        rows[400:, feature] = np.nextafter(rng.choice(exact, 200), np.float32(np.inf))
    rows[0] = np.nan
    rows[1, ::2] = np.nan
    return rows


def _loaded(booster: xgb.Booster) -> LoadedModel:
    return boosters.loaded(booster, N_FEATURES)


def _compiled_shap(booster: xgb.Booster) -> tuple[CompiledEnsemble, ShapEnsemble]:
    compiled = compile_booster(booster, N_FEATURES)
    assert compiled is not None
    assert compiled.shap is not None
    return compiled, compiled.shap


@pytest.mark.parametrize(
    ("depth", "rounds", "base_score", "extra"),
    [*boosters.VARIANTS, (6, 40, 0.7, {"min_child_weight": 0.0, "lambda": 0.1})],
)
def test_contributions_equal_xgboost(
    depth: int, rounds: int, base_score: float, extra: dict[str, Any]
) -> None:
    booster, x = _train(depth + rounds, rounds, max_depth=depth, base_score=base_score, **extra)
    compiled, shap = _compiled_shap(booster)
    assert shap.mismatch(booster, compiled.probe_matrix()) is None

    held_out, _ = _data(seed=99, rows=1000)
    for matrix in (x, held_out, _edge_rows(booster, x, seed=depth)):
        got = shap.contributions(matrix)
        expected = _xgboost_contributions(booster, matrix)
        assert got.shape == expected.shape == (len(matrix), N_FEATURES + 1)
        assert got.dtype == np.float32
        # Every column, the bias included, to the bit.
        np.testing.assert_array_equal(got, expected)
        # Features no tree splits on get exactly nothing.
        assert not got[:, list(UNUSED)].any()


def test_infinite_values_go_where_the_largest_numbers_go() -> None:
    booster, x = _train(31, 100, max_depth=4, base_score=0.2)
    _, shap = _compiled_shap(booster)
    rows = x[:300].copy()
    rows[:100:3, 0] = np.inf
    rows[1:100:3, 2] = -np.inf
    rows[2:100:3, ::2] = np.inf
    with pytest.raises(xgb.core.XGBoostError, match="inf"):
        _xgboost_contributions(booster, rows)
    # XGBoost refuses infinities here; the kernel explains them as prediction
    # scores them, like the largest finite numbers.
    largest = np.finfo(np.float32).max
    finite = np.nan_to_num(rows, nan=np.nan, posinf=largest, neginf=-largest)
    np.testing.assert_array_equal(shap.contributions(rows), _xgboost_contributions(booster, finite))


def test_trees_that_are_one_leaf() -> None:
    # The first rounds cannot split (gamma), the later ones can.
    stumps, x = _train(33, 3, max_depth=3, gamma=1e9, base_score=0.3)
    x_train, y = _data(33)
    params = {"objective": "binary:logistic", "max_depth": 3, "gamma": 0.0, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x_train, label=y), 5, xgb_model=stumps)
    booster.set_param({"nthread": 1})
    _, shap = _compiled_shap(booster)
    assert (np.diff(shap.tree_leaf_starts)[:3] == 1).all()
    np.testing.assert_array_equal(shap.contributions(x), _xgboost_contributions(booster, x))


@pytest.fixture(scope="module")
def product_like() -> tuple[xgb.Booster, CompiledEnsemble, ShapEnsemble, np.ndarray]:
    booster, x = _train(7, 100, max_depth=3, base_score=0.5, eta=0.1)
    compiled, shap = _compiled_shap(booster)
    return booster, compiled, shap, x


@pytest.mark.parametrize("rows", [0, 1, 2, 16, 255, 256, 257, 513])
def test_batch_sizes_across_block_boundaries(
    product_like: tuple[xgb.Booster, CompiledEnsemble, ShapEnsemble, np.ndarray], rows: int
) -> None:
    booster, _, shap, x = product_like
    matrix = x[:rows]
    got = shap.contributions(matrix)
    assert got.shape == (rows, N_FEATURES + 1)
    if rows:
        np.testing.assert_array_equal(got, _xgboost_contributions(booster, matrix))


def test_other_layouts_and_wrong_shapes(
    product_like: tuple[xgb.Booster, CompiledEnsemble, ShapEnsemble, np.ndarray],
) -> None:
    _, _, shap, x = product_like
    expected = shap.contributions(x[:300])
    np.testing.assert_array_equal(shap.contributions(np.asfortranarray(x[:300])), expected)
    np.testing.assert_array_equal(shap.contributions(x[:300].astype(np.float64)), expected)
    strided = x[:600:2]
    np.testing.assert_array_equal(
        shap.contributions(strided), shap.contributions(np.ascontiguousarray(strided))
    )
    with pytest.raises(ModelError, match="feature columns"):
        shap.contributions(x[:, :-1])
    with pytest.raises(ModelError, match="feature columns"):
        shap.contributions(x[0])


def test_probe_catches_wrong_tables_and_wrong_default_directions(
    product_like: tuple[xgb.Booster, CompiledEnsemble, ShapEnsemble, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    booster, compiled, shap, _ = product_like
    probe = compiled.probe_matrix()
    assert shap.mismatch(booster, probe) is None
    # Every row takes one value from every leaf's table. Rounding-sized
    # differences (another XGBoost build) pass, real ones do not.
    first_leaf = slice(shap.leaf_table_starts[0], shap.leaf_table_starts[1])
    tables = shap.tables.copy()
    tables[first_leaf] += 1e-7
    assert dataclasses.replace(shap, tables=tables).mismatch(booster, probe) is None
    tables[first_leaf] += 1e-3
    problem = dataclasses.replace(shap, tables=tables).mismatch(booster, probe)
    assert problem is not None and "probe rows have contributions differing" in problem
    # XGBoost explains a spread of at most SHAP_PROBE_ROWS of the probe rows.
    monkeypatch.setattr(trees, "SHAP_PROBE_ROWS", 40)
    problem = dataclasses.replace(shap, tables=tables).mismatch(booster, probe)
    assert problem is not None and "40 of 40 probe rows" in problem
    flipped = shap.default_left.copy()
    flipped[0] = not flipped[0]
    assert dataclasses.replace(shap, default_left=flipped).mismatch(booster, probe) is not None


def test_serving_model_explains_with_the_tables() -> None:
    booster, x = _train(41, 100, max_depth=3, base_score=0.5, eta=0.1)
    model = ServingModel.from_loaded(_loaded(booster))
    assert model.compiled is not None and model.compiled.shap is not None
    got = model.contributions(x[:64])
    assert got.shape == (64, N_FEATURES)
    np.testing.assert_array_equal(got, _xgboost_contributions(booster, x[:64])[:, :-1])
    assert model.contributions(x[:0]).shape == (0, N_FEATURES)
    # A wrong column count goes to xgboost, which says what is wrong.
    with pytest.raises(ValueError, match="feature names must have the same length"):
        model.contributions(x[:5, :-1])


def test_contributions_that_disagree_are_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster, x = _train(43, 30, max_depth=3)

    def off_by_a_little(matrix: np.ndarray, *args: Any) -> None:
        out = args[-1]
        out[:] = 0.0
        out[::7, 0] = 0.01

    monkeypatch.setattr(trees, "_shap_kernel", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="pipeline.scoring.model"):
        compiled = verified_ensemble(booster, N_FEATURES, "fraud v9")
        model = ServingModel.from_loaded(_loaded(booster))
    # Scores still come from the kernel; explanations from xgboost.
    assert compiled is not None and compiled.shap is None
    assert model.compiled is not None and model.compiled.shap is None
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "fraud v9: compiled TreeSHAP not used" in warnings[0]
    assert "probe rows have contributions differing" in warnings[0]
    expected = _xgboost_contributions(booster, x[:50])[:, :-1]
    np.testing.assert_array_equal(model.contributions(x[:50]), expected)


def test_tables_too_large_stay_with_xgboost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster, x = _train(45, 20, max_depth=4)
    monkeypatch.setattr(trees, "SHAP_MAX_TABLE_VALUES", 100)
    with caplog.at_level(logging.INFO, logger="pipeline.scoring.trees"):
        model = ServingModel.from_loaded(_loaded(booster))
    assert "TreeSHAP not compiled" in caplog.text
    assert model.compiled is not None and model.compiled.shap is None
    expected = _xgboost_contributions(booster, x[:20])[:, :-1]
    np.testing.assert_array_equal(model.contributions(x[:20]), expected)


def test_models_not_compiled_are_explained_by_xgboost() -> None:
    booster, x = _train(47, 10, booster="dart", max_depth=3, rate_drop=0.2)
    model = ServingModel.from_loaded(_loaded(booster))
    assert model.compiled is None
    expected = _xgboost_contributions(booster, x[:20])[:, :-1]
    np.testing.assert_array_equal(model.contributions(x[:20]), expected)
