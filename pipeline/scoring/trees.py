"""XGBoost tree ensembles as flat arrays and a compiled kernel: the same scores, faster.

``Booster.inplace_predict`` walks each row through each tree node by node, a
chain of dependent loads and unpredictable branches. For the scorer's shallow
trees it is cheaper to test every split of a tree for a block of rows at once
(straight vectorized loops over one feature column) and then follow the
resulting bits from the root. The kernel repeats XGBoost's arithmetic exactly:
a float32 margin starting at the model's base margin, one float32 addition per
tree in tree order, ``x < threshold`` goes left, a missing value (NaN) follows
the split's default direction, and the objective's float32 transform at the end.

Every tree is padded to a complete binary tree of the ensemble's depth (a leaf
above the bottom level is repeated under dummy splits), so all trees share one
layout. Only what is checked against XGBoost is compiled
(:func:`compile_booster` returns ``None`` for anything else), and
:meth:`CompiledEnsemble.mismatch` compares the two on a probe matrix before a
model serves from the kernel.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import xgboost

from pipeline.model.errors import ModelError

F32 = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

#: Deeper trees are left to XGBoost: every split of a tree is tested for every
#: row, and a row's split results are the bits of one int64.
MAX_DEPTH = 6

#: Rows scored together, one tree at a time (their columns stay in L1 cache).
BLOCK_ROWS = 256

IDENTITY = 0
SIGMOID = 1

#: Objectives whose prediction transform the kernel reproduces.
TRANSFORMS = {
    "binary:logistic": SIGMOID,
    "reg:logistic": SIGMOID,
    "binary:logitraw": IDENTITY,
}

#: Rows of the verification probe drawn at random (the threshold rows come on top).
PROBE_RANDOM_ROWS = 256
#: At most this many rows of exact threshold values in the probe.
PROBE_MAX_THRESHOLD_ROWS = 2048


class _Unsupported(Exception):
    """The booster uses something the kernel does not reproduce."""


@numba.njit(cache=True, nogil=True)
def _predict_kernel(
    matrix: F32,
    split_features: npt.NDArray[np.int32],
    thresholds: F32,
    missing_right: npt.NDArray[np.bool_],
    leaf_values: F32,
    depth: int,
    base_margin: np.float32,
    transform: int,
    out: F32,
) -> None:
    # Rows go through in blocks, one tree at a time: first every split of the
    # tree is tested for every row of the block (independent, vectorizable
    # loops over a column), one bit per split; then each row walks its bits
    # from the root. This avoids the chain of dependent loads of a pointer walk.
    n_rows, n_features = matrix.shape
    n_trees, n_splits = split_features.shape
    columns = np.empty((n_features, BLOCK_ROWS), dtype=np.float32)
    split_bits = np.empty(BLOCK_ROWS, dtype=np.int64)
    nodes = np.empty(BLOCK_ROWS, dtype=np.int64)
    margins = np.empty(BLOCK_ROWS, dtype=np.float32)
    cap = np.float32(88.7)
    one = np.float32(1.0)
    eps = np.float32(1e-16)
    for start in range(0, n_rows, BLOCK_ROWS):
        size = min(BLOCK_ROWS, n_rows - start)
        for row in range(size):
            for feature in range(n_features):
                columns[feature, row] = matrix[start + row, feature]
            margins[row] = base_margin
        for tree in range(n_trees):
            split_bits[:size] = 0
            for split in range(n_splits):
                values = columns[split_features[tree, split]]
                cut = thresholds[tree, split]
                # A number goes right unless value < cut. Every comparison with
                # NaN is false, so the two ways of writing that test send NaN
                # right and left: one comparison covers the default direction.
                if missing_right[tree, split]:
                    for row in range(size):
                        split_bits[row] |= np.int64(not values[row] < cut) << split
                else:
                    for row in range(size):
                        split_bits[row] |= np.int64(values[row] >= cut) << split
            nodes[:size] = 0
            for _ in range(depth):
                for row in range(size):
                    node = nodes[row]
                    nodes[row] = 2 * node + 1 + ((split_bits[row] >> node) & 1)
            leaves = leaf_values[tree]
            for row in range(size):
                margins[row] += leaves[nodes[row] - n_splits]
        for row in range(size):
            margin = margins[row]
            if transform == SIGMOID:
                # XGBoost's float32 sigmoid, clamped against exp overflow.
                exponent = -margin
                if cap < exponent:
                    exponent = cap
                out[start + row] = one / (np.exp(exponent) + one + eps)
            else:
                out[start + row] = margin


@dataclass(frozen=True, eq=False)
class CompiledEnsemble:
    """A booster's trees padded to complete binary trees, in heap order.

    Node ``i`` of a tree has children ``2i+1`` (left) and ``2i+2`` (right);
    the ``2**depth`` leaves follow the ``2**depth - 1`` split nodes.
    """

    split_features: npt.NDArray[np.int32]  # (trees, 2**depth - 1)
    thresholds: F32  # (trees, 2**depth - 1)
    missing_right: npt.NDArray[np.bool_]  # (trees, 2**depth - 1): NaN goes right
    leaf_values: F32  # (trees, 2**depth)
    depth: int
    base_margin: np.float32
    transform: int
    n_features: int

    @property
    def n_trees(self) -> int:
        return int(self.leaf_values.shape[0])

    def predict(self, matrix: npt.NDArray[np.floating[Any]]) -> F32:
        """Scores as ``inplace_predict`` returns them (float32, one per row)."""
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ModelError(
                f"expected a matrix of {self.n_features} feature columns, got shape {rows.shape}"
            )
        out = np.empty(rows.shape[0], dtype=np.float32)
        _predict_kernel(
            rows,
            self.split_features,
            self.thresholds,
            self.missing_right,
            self.leaf_values,
            self.depth,
            self.base_margin,
            self.transform,
            out,
        )
        return out

    def probe_matrix(self, seed: int = 0) -> F32:
        """Rows that exercise every split: thresholds exactly, just below, NaN, and random.

        Random values cover each feature's range of thresholds; the rows of
        exact thresholds (and of the next float32 below) catch a threshold read
        one ulp off, the NaN cells every default direction.
        """
        rng = np.random.default_rng(seed)
        real = ~np.isnan(self.thresholds)  # padding splits have NaN cuts
        cuts_by_feature = [
            np.unique(self.thresholds[real & (self.split_features == feature)])
            for feature in range(self.n_features)
        ]
        n_exact = min(max(len(cuts) for cuts in cuts_by_feature), PROBE_MAX_THRESHOLD_ROWS)
        random_rows = np.empty((PROBE_RANDOM_ROWS, self.n_features), dtype=np.float32)
        exact_rows = np.zeros((n_exact, self.n_features), dtype=np.float32)
        for feature, cuts in enumerate(cuts_by_feature):
            low, high = (float(cuts[0]), float(cuts[-1])) if len(cuts) else (-1.0, 1.0)
            spread = max(high - low, 1.0) * 0.25
            random_rows[:, feature] = rng.uniform(low - spread, high + spread, PROBE_RANDOM_ROWS)
            if len(cuts):
                # Every cut when there are few, a random subset when there are many.
                exact_rows[:, feature] = np.resize(rng.permutation(cuts), n_exact)
        below_rows = np.nextafter(exact_rows, np.float32(-np.inf))
        probe = np.concatenate([random_rows, exact_rows, below_rows])
        probe[rng.random(probe.shape) < 0.1] = np.nan
        all_missing = np.full(self.n_features, np.nan, dtype=np.float32)
        infinite = np.where(np.arange(self.n_features) % 2 == 0, np.inf, -np.inf)
        return np.vstack([probe, all_missing, infinite]).astype(np.float32)

    def mismatch(self, booster: xgboost.Booster, tolerance: float = 1e-6) -> str | None:
        """Why this ensemble must not replace ``booster`` (``None``: it may).

        Scores the probe matrix both ways; also compiles the kernel, so the
        first real batch does not pay for it.
        """
        probe = self.probe_matrix()
        expected = np.asarray(
            booster.inplace_predict(probe, validate_features=False), dtype=np.float32
        ).reshape(-1)
        got = self.predict(probe)
        if expected.shape != got.shape:
            return f"xgboost returned {expected.shape[0]} scores for {len(probe)} probe rows"
        gap = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        both_nan = np.isnan(got) & np.isnan(expected)
        bad = ~both_nan & ~(gap <= tolerance)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return (
                f"{int(bad.sum())} of {len(probe)} probe rows differ by more than {tolerance:g}"
                f" (row {row}: {got[row]!r} vs xgboost {expected[row]!r})"
            )
        return None


def compile_booster(booster: xgboost.Booster, n_features: int) -> CompiledEnsemble | None:
    """The booster's trees as a :class:`CompiledEnsemble`, or ``None`` if not supported.

    Supported: ``gbtree`` boosters with one output, numeric splits, trees at
    most :data:`MAX_DEPTH` deep, ``n_features`` inputs, and an objective in
    :data:`TRANSFORMS`. Anything else (categorical splits, dart, multi-class or
    multi-target models, other objectives) stays with XGBoost.
    """
    try:
        model = json.loads(bytes(booster.save_raw("json")))
        return _flatten(model, n_features)
    except (_Unsupported, KeyError, TypeError, ValueError) as exc:
        # A malformed model JSON is one more thing this module does not read.
        log.info("model not compiled, xgboost predicts: %s", exc)
        return None


def _flatten(model: dict[str, Any], n_features: int) -> CompiledEnsemble:
    learner = _get(model, "learner", dict)
    objective = _get(_get(learner, "objective", dict), "name", str)
    if objective not in TRANSFORMS:
        raise _Unsupported(f"objective {objective!r}")
    params = _get(learner, "learner_model_param", dict)
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) != 1:
        raise _Unsupported("more than one output")
    if int(_get(params, "num_feature", str)) != n_features:
        raise _Unsupported(f"model has {params['num_feature']} features, serving {n_features}")
    gradient_booster = _get(learner, "gradient_booster", dict)
    kind = _get(gradient_booster, "name", str)
    if kind != "gbtree":
        raise _Unsupported(f"booster {kind!r}")
    forest = _get(gradient_booster, "model", dict)
    trees = _get(forest, "trees", list)
    if any(group != 0 for group in _get(forest, "tree_info", list)):
        raise _Unsupported("trees of more than one output group")
    if not trees:
        raise _Unsupported("no trees")
    if n_features < 1:
        raise _Unsupported("no features")

    shapes = [_tree_shape(tree, n_features) for tree in trees]
    depth = max(tree_depth for tree_depth, _ in shapes)
    n_splits = (1 << depth) - 1
    split_features = np.zeros((len(trees), n_splits), dtype=np.int32)
    thresholds = np.full((len(trees), n_splits), np.nan, dtype=np.float32)
    missing_right = np.zeros((len(trees), n_splits), dtype=np.bool_)
    leaf_values = np.zeros((len(trees), n_splits + 1), dtype=np.float32)
    for index, (_, arrays) in enumerate(shapes):
        _place(
            arrays,
            depth,
            split_features[index],
            thresholds[index],
            missing_right[index],
            leaf_values[index],
        )
    return CompiledEnsemble(
        split_features=split_features,
        thresholds=thresholds,
        missing_right=missing_right,
        leaf_values=leaf_values,
        depth=depth,
        base_margin=_base_margin(model, n_features),
        transform=TRANSFORMS[objective],
        n_features=n_features,
    )


@dataclass(frozen=True)
class _TreeArrays:
    left: list[int]
    right: list[int]
    feature: list[int]
    condition: F32  # threshold of a split, value of a leaf
    default_left: list[bool]


def _tree_shape(tree: Any, n_features: int) -> tuple[int, _TreeArrays]:
    """The tree's depth and its node arrays, checked for what the kernel supports."""
    if not isinstance(tree, dict):
        raise _Unsupported("a tree is not a JSON object")
    size_leaf_vector = int(_get(tree, "tree_param", dict).get("size_leaf_vector", "1"))
    if size_leaf_vector > 1:
        raise _Unsupported("vector leaves")
    if any(kind != 0 for kind in tree.get("split_type", [])) or tree.get("categories_nodes"):
        raise _Unsupported("categorical splits")
    left = _get(tree, "left_children", list)
    right = _get(tree, "right_children", list)
    feature = _get(tree, "split_indices", list)
    default_left = [bool(flag) for flag in _get(tree, "default_left", list)]
    condition = np.asarray(_get(tree, "split_conditions", list), dtype=np.float32)
    n_nodes = len(left)
    if not n_nodes or not (
        len(right) == len(feature) == len(default_left) == len(condition) == n_nodes
    ):
        raise _Unsupported("tree arrays of different lengths")
    arrays = _TreeArrays(left, right, feature, condition, default_left)

    depth = 0
    stack = [(0, 0)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            raise _Unsupported(f"trees more than {MAX_DEPTH} deep")
        if left[node] == -1:
            depth = max(depth, level)
            continue
        if not (0 <= feature[node] < n_features):
            raise _Unsupported(f"split on feature {feature[node]} of {n_features}")
        if np.isnan(condition[node]):
            raise _Unsupported("a split on a NaN threshold")
        for child in (left[node], right[node]):
            if not 0 < child < n_nodes:
                raise _Unsupported(f"child node {child} of a tree of {n_nodes} nodes")
            stack.append((child, level + 1))
    return depth, arrays


def _place(
    tree: _TreeArrays,
    depth: int,
    split_features: npt.NDArray[np.int32],
    thresholds: F32,
    missing_right: npt.NDArray[np.bool_],
    leaf_values: F32,
) -> None:
    """Write one tree into the padded heap layout (one row of each array)."""
    first_leaf = (1 << depth) - 1
    stack = [(0, 0, 0)]  # (xgboost node, heap slot, level)
    while stack:
        node, slot, level = stack.pop()
        if tree.left[node] == -1:
            # Every bottom-level descendant of the slot gets the leaf's value;
            # the padding splits above them (NaN cut, feature 0) lead only there.
            span = 1 << (depth - level)
            bottom = (slot + 1) * span - 1 - first_leaf
            leaf_values[bottom : bottom + span] = tree.condition[node]
            continue
        split_features[slot] = tree.feature[node]
        thresholds[slot] = tree.condition[node]
        missing_right[slot] = not tree.default_left[node]
        stack.append((tree.left[node], 2 * slot + 1, level + 1))
        stack.append((tree.right[node], 2 * slot + 2, level + 1))


def _base_margin(model: dict[str, Any], n_features: int) -> np.float32:
    """The margin XGBoost starts every row from, as XGBoost itself computes it.

    The intercept is stored as a probability and turned into a margin by the
    objective when the model loads; rather than repeat that float32 arithmetic,
    load a copy whose leaves are all zero and read its margin.
    """
    zeroed = json.loads(json.dumps(model))
    for tree in zeroed["learner"]["gradient_booster"]["model"]["trees"]:
        tree["split_conditions"] = [
            0.0 if child == -1 else value
            for child, value in zip(tree["left_children"], tree["split_conditions"], strict=True)
        ]
    try:
        intercept_only = xgboost.Booster(model_file=bytearray(json.dumps(zeroed).encode()))
        margin = intercept_only.inplace_predict(
            np.zeros((1, n_features), dtype=np.float32),
            predict_type="margin",
            validate_features=False,
        )
    except xgboost.core.XGBoostError as exc:
        raise _Unsupported(f"xgboost cannot load the model with zero leaves: {exc}") from exc
    values = np.asarray(margin, dtype=np.float32).reshape(-1)
    if values.shape != (1,):
        raise _Unsupported(f"{values.size} margins per row")
    return np.float32(values[0])


def _get(mapping: dict[str, Any], key: str, kind: type) -> Any:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind):
        raise _Unsupported(f"model JSON without a {kind.__name__} {key!r}")
    return value
