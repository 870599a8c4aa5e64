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

The same trees, unpadded and with each node's cover (``sum_hessian``), also
give exact TreeSHAP contributions (:class:`ShapEnsemble`), the values of
``Booster.predict(..., pred_contribs=True)``: what XGBoost computes at a leaf
for every pattern of agreement along its path is computed once, in its float32
arithmetic, so a row costs a test per split and a table lookup per leaf, and
the lookups are added in the order XGBoost adds them. They are checked against
XGBoost the same way (:meth:`ShapEnsemble.mismatch`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost

from pipeline.jit import kernel
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

#: Largest difference from XGBoost's TreeSHAP values accepted on the probe rows,
#: per unit of the row's largest value (at least 1). The kernel repeats XGBoost's
#: float32 operations in its order, so the values are normally the same bits;
#: this leaves room for an XGBoost build that rounds differently (fused
#: multiply-adds), whose float32 errors grow with the size of the terms.
SHAP_TOLERANCE = 1e-5
#: At most this many probe rows are explained by XGBoost at load (about 1 ms a
#: row for 200 trees 6 deep); every row takes one table row from every leaf.
SHAP_PROBE_ROWS = 512
#: TreeSHAP tables larger than this (float32 values, 16 MiB) are left to XGBoost:
#: a leaf d steps deep with u distinct features on its path has u * 2**d of them.
SHAP_MAX_TABLE_VALUES = 1 << 22
#: Float32 values of the TreeSHAP kernel's per-block buffer of leaf terms (256 KiB):
#: deep trees with many features explain fewer rows per block.
SHAP_TERMS_BUFFER = 1 << 16


class _Unsupported(Exception):
    """The booster uses something the kernel does not reproduce."""


@kernel
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


# TreeSHAP (Lundberg et al. 2018, Algorithm 2) from per-leaf tables. XGBoost's
# recursive walk builds, at every leaf, a path state that depends on the row
# only through which steps of the root-to-leaf path the row agrees with (its
# split goes the path's way, a NaN by the default direction): one of 2**d
# patterns for a path of d steps. For every leaf and pattern, the walk down to
# the leaf (EXTEND at each step, UNWIND where a feature repeats, the unwound
# sums at the leaf) is run once, at load, in XGBoost's float32 operations and
# order, so each table value is the float32 term XGBoost adds for that leaf. A
# row then costs one test per split and one table row per leaf ("Fast TreeSHAP
# v2", Yang 2021). The kernel also adds the terms in XGBoost's order: a tree's
# in the order of its walk for the row (the row's own branch first), in float32
# from zero, then the trees' sums in tree order.


@kernel
def _extend_path(
    features: npt.NDArray[np.int32],
    zeros: F32,
    ones: F32,
    weights: F32,
    depth: int,
    zero_fraction: np.float32,
    one_fraction: np.float32,
    feature: int,
) -> None:
    features[depth] = feature
    zeros[depth] = zero_fraction
    ones[depth] = one_fraction
    weights[depth] = np.float32(1.0) if depth == 0 else np.float32(0.0)
    scale = np.float32(depth + 1)
    for i in range(depth - 1, -1, -1):
        weights[i + 1] += one_fraction * weights[i] * np.float32(i + 1) / scale
        weights[i] = zero_fraction * weights[i] * np.float32(depth - i) / scale


@kernel
def _unwind_path(
    features: npt.NDArray[np.int32],
    zeros: F32,
    ones: F32,
    weights: F32,
    depth: int,
    index: int,
) -> None:
    one_fraction = ones[index]
    zero_fraction = zeros[index]
    next_one_portion = weights[depth]
    scale = np.float32(depth + 1)
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0:
            previous = weights[i]
            weights[i] = next_one_portion * scale / (np.float32(i + 1) * one_fraction)
            next_one_portion = previous - weights[i] * zero_fraction * np.float32(depth - i) / scale
        else:
            weights[i] = (weights[i] * scale) / (zero_fraction * np.float32(depth - i))
    for i in range(index, depth):
        features[i] = features[i + 1]
        zeros[i] = zeros[i + 1]
        ones[i] = ones[i + 1]


@kernel
def _unwound_path_sum(zeros: F32, ones: F32, weights: F32, depth: int, index: int) -> np.float32:
    # The total permutation weight of the path without element ``index``.
    one_fraction = ones[index]
    zero_fraction = zeros[index]
    next_one_portion = weights[depth]
    scale = np.float32(depth + 1)
    total = np.float32(0.0)
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0:
            part = next_one_portion * scale / (np.float32(i + 1) * one_fraction)
            total += part
            next_one_portion = weights[i] - part * zero_fraction * (np.float32(depth - i) / scale)
        elif zero_fraction != 0:
            total += (weights[i] / zero_fraction) / (np.float32(depth - i) / scale)
    return total


@kernel
def _fill_leaf_tables(
    leaf_values: F32,
    leaf_step_starts: npt.NDArray[np.int64],
    step_features: npt.NDArray[np.int32],
    step_covers: F32,
    leaf_feature_starts: npt.NDArray[np.int64],
    leaf_table_starts: npt.NDArray[np.int64],
    leaf_features: npt.NDArray[np.int32],
    tables: F32,
) -> None:
    # Fills leaf_features (a leaf's distinct path features in the order of
    # XGBoost's final path) and tables: row ``pattern`` of a leaf's table (bit
    # j set when the row agrees with step j) holds one term per feature.
    n_leaves = leaf_values.shape[0]
    longest = 0
    for leaf in range(n_leaves):
        longest = max(longest, leaf_step_starts[leaf + 1] - leaf_step_starts[leaf])
    features = np.empty(longest + 1, dtype=np.int32)
    zeros = np.empty(longest + 1, dtype=np.float32)
    ones = np.empty(longest + 1, dtype=np.float32)
    weights = np.empty(longest + 1, dtype=np.float32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for leaf in range(n_leaves):
        first_step = leaf_step_starts[leaf]
        n_steps = leaf_step_starts[leaf + 1] - first_step
        first_feature = leaf_feature_starts[leaf]
        n_unique = leaf_feature_starts[leaf + 1] - first_feature
        value = leaf_values[leaf]
        table = tables[leaf_table_starts[leaf] : leaf_table_starts[leaf + 1]]
        for pattern in range(1 << n_steps):
            depth = 0
            _extend_path(features, zeros, ones, weights, 0, one, one, -1)  # the root's
            for step in range(n_steps):
                feature = step_features[first_step + step]
                incoming_zero = one
                incoming_one = one
                for index in range(1, depth + 1):
                    if features[index] == feature:
                        incoming_zero = zeros[index]
                        incoming_one = ones[index]
                        _unwind_path(features, zeros, ones, weights, depth, index)
                        depth -= 1
                        break
                depth += 1
                agrees = (pattern >> step) & 1
                _extend_path(
                    features,
                    zeros,
                    ones,
                    weights,
                    depth,
                    step_covers[first_step + step] * incoming_zero,
                    incoming_one if agrees else zero,
                    feature,
                )
            for index in range(1, n_unique + 1):
                weight = _unwound_path_sum(zeros, ones, weights, depth, index)
                term = weight * (ones[index] - zeros[index]) * value
                table[pattern * n_unique + index - 1] = term
                leaf_features[first_feature + index - 1] = features[index]


@kernel
def _shap_kernel(
    matrix: F32,
    tree_split_starts: npt.NDArray[np.int64],
    split_features: npt.NDArray[np.int32],
    thresholds: F32,
    default_left: npt.NDArray[np.bool_],
    tree_leaf_starts: npt.NDArray[np.int64],
    leaf_step_starts: npt.NDArray[np.int64],
    step_splits: npt.NDArray[np.int32],
    step_left: npt.NDArray[np.bool_],
    leaf_feature_starts: npt.NDArray[np.int64],
    leaf_slots: npt.NDArray[np.int32],
    leaf_table_starts: npt.NDArray[np.int64],
    tables: F32,
    tree_feature_starts: npt.NDArray[np.int64],
    tree_features: npt.NDArray[np.int32],
    depth: int,
    bias: np.float32,
    out: F32,
) -> None:
    # Rows go through in blocks, one tree at a time, in straight loops over the
    # rows as in _predict_kernel: one bit per split (set: the row goes left);
    # per leaf, each row's pattern and the leaf's place in XGBoost's walk of the
    # tree for that row (hot branch first: a cold step j sets bit depth-1-j, so
    # places sort in walk order, and a leaf above the bottom level keeps its low
    # bits clear); the leaf's terms go to ``terms[feature slot, row, place]``.
    # Each feature's terms are then added in place order, as XGBoost adds them
    # (the zeros between change nothing: a sum from +0.0 is never -0.0).
    n_rows, n_features = matrix.shape
    n_trees = tree_split_starts.shape[0] - 1
    n_places = 1 << depth
    widest = 1
    for tree in range(n_trees):
        widest = max(widest, tree_feature_starts[tree + 1] - tree_feature_starts[tree])
    block = max(1, min(BLOCK_ROWS, n_rows, SHAP_TERMS_BUFFER // (widest * n_places)))
    columns = np.empty((n_features, block), dtype=np.float32)
    terms = np.zeros((widest, block, n_places), dtype=np.float32)
    phi = np.empty((n_features, block), dtype=np.float32)
    split_bits = np.empty(block, dtype=np.int64)
    patterns = np.empty(block, dtype=np.int64)
    places = np.empty(block, dtype=np.int64)
    for start in range(0, n_rows, block):
        size = min(block, n_rows - start)
        for row in range(size):
            for feature in range(n_features):
                columns[feature, row] = matrix[start + row, feature]
                phi[feature, row] = 0.0
        for tree in range(n_trees):
            first_split = tree_split_starts[tree]
            for row in range(size):
                split_bits[row] = 0
            for split in range(tree_split_starts[tree + 1] - first_split):
                feature = split_features[first_split + split]
                cut = thresholds[first_split + split]
                # NaN fails every comparison: "not >=" sends it left, "<" right.
                if default_left[first_split + split]:
                    for row in range(size):
                        split_bits[row] |= np.int64(not columns[feature, row] >= cut) << split
                else:
                    for row in range(size):
                        split_bits[row] |= np.int64(columns[feature, row] < cut) << split
            for leaf in range(tree_leaf_starts[tree], tree_leaf_starts[tree + 1]):
                for row in range(size):
                    patterns[row] = 0
                    places[row] = 0
                first_step = leaf_step_starts[leaf]
                for step in range(leaf_step_starts[leaf + 1] - first_step):
                    split = step_splits[first_step + step]
                    away = np.int64(not step_left[first_step + step])
                    for row in range(size):
                        agrees = ((split_bits[row] >> split) & 1) ^ away
                        patterns[row] |= agrees << step
                        places[row] |= (agrees ^ 1) << (depth - 1 - step)
                first_feature = leaf_feature_starts[leaf]
                n_unique = leaf_feature_starts[leaf + 1] - first_feature
                first_term = leaf_table_starts[leaf]
                for k in range(n_unique):
                    slot = leaf_slots[first_feature + k]
                    for row in range(size):
                        at = first_term + patterns[row] * n_unique + k
                        terms[slot, row, places[row]] = tables[at]
            first_feature = tree_feature_starts[tree]
            for slot in range(tree_feature_starts[tree + 1] - first_feature):
                feature = tree_features[first_feature + slot]
                for row in range(size):
                    # XGBoost sums each tree apart, then adds it to the row's totals.
                    tree_sum = np.float32(0.0)
                    for place in range(n_places):
                        tree_sum += terms[slot, row, place]
                        terms[slot, row, place] = 0.0
                    phi[feature, row] += tree_sum
        for row in range(size):
            for feature in range(n_features):
                out[start + row, feature] = phi[feature, row]
            out[start + row, n_features] = bias


@dataclass(frozen=True, eq=False)
class ShapEnsemble:
    """A booster's trees as per-leaf TreeSHAP tables and the splits that index them.

    Tree ``t`` owns splits ``tree_split_starts[t]`` to ``tree_split_starts[t + 1]``,
    leaves ``tree_leaf_starts[t]`` to ``tree_leaf_starts[t + 1]`` and the
    features it splits on, ``tree_features`` from ``tree_feature_starts[t]``.
    A leaf's path is a run of steps (a split of its tree, numbered within the
    tree, and the direction towards the leaf); a leaf ``d`` steps down with
    ``u`` distinct path features has a table of ``2**d`` rows (bit ``j`` of the
    row number: the row agreed with step ``j``) of ``u`` float32 terms, one per
    feature, given as its slot among the tree's features (``leaf_slots``). The
    bias column is the same for every row: each tree's cover-weighted mean
    leaf value, then the base margin, summed in float32 in XGBoost's order.
    """

    tree_split_starts: npt.NDArray[np.int64]
    split_features: npt.NDArray[np.int32]
    thresholds: F32
    default_left: npt.NDArray[np.bool_]  # NaN goes left
    tree_leaf_starts: npt.NDArray[np.int64]
    leaf_step_starts: npt.NDArray[np.int64]
    step_splits: npt.NDArray[np.int32]
    step_left: npt.NDArray[np.bool_]
    leaf_feature_starts: npt.NDArray[np.int64]
    leaf_slots: npt.NDArray[np.int32]
    leaf_table_starts: npt.NDArray[np.int64]
    tables: F32
    tree_feature_starts: npt.NDArray[np.int64]
    tree_features: npt.NDArray[np.int32]
    depth: int
    bias: np.float32
    n_features: int

    def contributions(self, matrix: npt.NDArray[np.floating[Any]]) -> F32:
        """``pred_contribs`` as XGBoost returns it: (rows, features + 1), the bias column last.

        NaN is missing and follows the split's default direction. XGBoost
        refuses infinite values here; the kernel sends them down the trees as
        prediction does (as the largest finite numbers would go).
        """
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ModelError(
                f"expected a matrix of {self.n_features} feature columns, got shape {rows.shape}"
            )
        out = np.empty((rows.shape[0], self.n_features + 1), dtype=np.float32)
        _shap_kernel(
            rows,
            self.tree_split_starts,
            self.split_features,
            self.thresholds,
            self.default_left,
            self.tree_leaf_starts,
            self.leaf_step_starts,
            self.step_splits,
            self.step_left,
            self.leaf_feature_starts,
            self.leaf_slots,
            self.leaf_table_starts,
            self.tables,
            self.tree_feature_starts,
            self.tree_features,
            self.depth,
            self.bias,
            out,
        )
        return out

    def mismatch(
        self, booster: xgboost.Booster, probe: F32, tolerance: float = SHAP_TOLERANCE
    ) -> str | None:
        """Why these contributions must not replace ``booster``'s (``None``: they may).

        Compares every column, the bias included, on the probe rows (those
        with an infinite value left out: XGBoost refuses them; at most
        :data:`SHAP_PROBE_ROWS`, spread evenly over the probe); also compiles
        the kernel.
        """
        rows = probe[~np.isinf(probe).any(axis=1)]
        if len(rows) > SHAP_PROBE_ROWS:
            rows = rows[np.linspace(0, len(rows) - 1, SHAP_PROBE_ROWS).round().astype(np.intp)]
        dmatrix = xgboost.DMatrix(rows, nthread=1)
        expected = np.asarray(
            booster.predict(dmatrix, pred_contribs=True, validate_features=False),
            dtype=np.float32,
        )
        got = self.contributions(rows)
        if expected.shape != got.shape:
            return f"xgboost returned contributions of shape {expected.shape}, not {got.shape}"
        reference = expected.astype(np.float64)
        gap = np.abs(got.astype(np.float64) - reference)
        scale = np.nanmax(np.abs(reference), axis=1, initial=1.0)
        bad = ~(np.isnan(got) & np.isnan(expected)) & ~(gap <= tolerance * scale[:, None])
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            return (
                f"{int(bad.any(axis=1).sum())} of {len(rows)} probe rows have contributions"
                f" differing by more than {tolerance:g} per unit (row {row} column {column}:"
                f" {got[row, column]!r} vs xgboost {expected[row, column]!r})"
            )
        return None


@dataclass(frozen=True, eq=False)
class CompiledEnsemble:
    """A booster's trees padded to complete binary trees, in heap order.

    Node ``i`` of a tree has children ``2i+1`` (left) and ``2i+2`` (right);
    the ``2**depth`` leaves follow the ``2**depth - 1`` split nodes. ``shap``
    holds the same trees for TreeSHAP contributions (``None`` when its tables
    would be too large, or once they failed their check against XGBoost).
    """

    split_features: npt.NDArray[np.int32]  # (trees, 2**depth - 1)
    thresholds: F32  # (trees, 2**depth - 1)
    missing_right: npt.NDArray[np.bool_]  # (trees, 2**depth - 1): NaN goes right
    leaf_values: F32  # (trees, 2**depth)
    depth: int
    base_margin: np.float32
    transform: int
    n_features: int
    shap: ShapEnsemble | None = field(default=None, repr=False)

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
    multi-target models, other objectives) stays with XGBoost. The ensemble's
    ``shap`` is ``None`` when its tables would exceed :data:`SHAP_MAX_TABLE_VALUES`.
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
    base_margin = _base_margin(model, n_features)
    return CompiledEnsemble(
        split_features=split_features,
        thresholds=thresholds,
        missing_right=missing_right,
        leaf_values=leaf_values,
        depth=depth,
        base_margin=base_margin,
        transform=TRANSFORMS[objective],
        n_features=n_features,
        shap=_shap_ensemble([arrays for _, arrays in shapes], depth, base_margin, n_features),
    )


@dataclass(frozen=True)
class _TreeArrays:
    left: list[int]
    right: list[int]
    feature: list[int]
    condition: F32  # threshold of a split, value of a leaf
    default_left: list[bool]
    cover: F32  # sum of the training rows' hessians that reached the node


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
    cover = np.asarray(_get(tree, "sum_hessian", list), dtype=np.float32)
    n_nodes = len(left)
    if not n_nodes or not (
        len(right) == len(feature) == len(default_left) == len(condition) == len(cover) == n_nodes
    ):
        raise _Unsupported("tree arrays of different lengths")
    arrays = _TreeArrays(left, right, feature, condition, default_left, cover)

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


def _shap_ensemble(
    trees: list[_TreeArrays], depth: int, base_margin: np.float32, n_features: int
) -> ShapEnsemble | None:
    """The trees' TreeSHAP tables, or ``None`` (logged) when they would be too large."""
    tree_split_starts = [0]
    split_features: list[int] = []
    thresholds: list[np.float32] = []
    default_left: list[bool] = []
    tree_leaf_starts = [0]
    leaf_values: list[np.float32] = []
    leaf_step_starts = [0]
    step_splits: list[int] = []
    step_left: list[bool] = []
    step_features: list[int] = []
    step_covers: list[np.float32] = []
    leaf_feature_starts = [0]
    leaf_table_starts = [0]
    tree_feature_starts = [0]
    tree_features: list[int] = []
    bias = np.float32(0.0)
    for tree in trees:
        first_split = len(split_features)
        # (node, the steps to it: (split within the tree, goes left, feature,
        # the child's share of its parent's cover, a float32 division as in XGBoost))
        stack: list[tuple[int, list[tuple[int, bool, int, np.float32]]]] = [(0, [])]
        while stack:
            node, steps = stack.pop()
            if tree.left[node] == -1:
                leaf_values.append(tree.condition[node])
                for split, goes_left, feature, share in steps:
                    step_splits.append(split)
                    step_left.append(goes_left)
                    step_features.append(feature)
                    step_covers.append(share)
                leaf_step_starts.append(len(step_splits))
                n_unique = len({feature for _, _, feature, _ in steps})
                leaf_feature_starts.append(leaf_feature_starts[-1] + n_unique)
                leaf_table_starts.append(leaf_table_starts[-1] + (n_unique << len(steps)))
                continue
            split = len(split_features) - first_split
            feature = tree.feature[node]
            split_features.append(feature)
            thresholds.append(tree.condition[node])
            default_left.append(tree.default_left[node])
            child_left, child_right = tree.left[node], tree.right[node]
            with np.errstate(divide="ignore", invalid="ignore"):  # XGBoost's NaN or inf
                left_share = tree.cover[child_left] / tree.cover[node]
                right_share = tree.cover[child_right] / tree.cover[node]
            stack.append((child_right, [*steps, (split, False, feature, right_share)]))
            stack.append((child_left, [*steps, (split, True, feature, left_share)]))
        tree_split_starts.append(len(split_features))
        tree_leaf_starts.append(len(leaf_values))
        tree_features.extend(sorted(set(split_features[first_split:])))
        tree_feature_starts.append(len(tree_features))
        # XGBoost adds each tree's mean (to a zero) to the bias, then the base margin.
        bias = np.float32(bias + _mean_value(tree, 0))
    bias = np.float32(bias + base_margin)
    if leaf_table_starts[-1] > SHAP_MAX_TABLE_VALUES:
        log.info(
            "TreeSHAP not compiled, xgboost explains: tables of %d values (at most %d)",
            leaf_table_starts[-1],
            SHAP_MAX_TABLE_VALUES,
        )
        return None
    feature_starts = np.asarray(leaf_feature_starts, dtype=np.int64)
    table_starts = np.asarray(leaf_table_starts, dtype=np.int64)
    leaf_features = np.empty(leaf_feature_starts[-1], dtype=np.int32)
    tables = np.empty(leaf_table_starts[-1], dtype=np.float32)
    _fill_leaf_tables(
        np.asarray(leaf_values, dtype=np.float32),
        np.asarray(leaf_step_starts, dtype=np.int64),
        np.asarray(step_features, dtype=np.int32),
        np.asarray(step_covers, dtype=np.float32),
        feature_starts,
        table_starts,
        leaf_features,
        tables,
    )
    # A leaf's features as slots among its tree's features.
    leaf_slots = np.empty_like(leaf_features)
    for tree_index in range(len(trees)):
        first = tree_feature_starts[tree_index]
        slot_of = {
            feature: slot
            for slot, feature in enumerate(
                tree_features[first : tree_feature_starts[tree_index + 1]]
            )
        }
        first_leaf, end_leaf = tree_leaf_starts[tree_index], tree_leaf_starts[tree_index + 1]
        for index in range(leaf_feature_starts[first_leaf], leaf_feature_starts[end_leaf]):
            leaf_slots[index] = slot_of[int(leaf_features[index])]
    return ShapEnsemble(
        tree_split_starts=np.asarray(tree_split_starts, dtype=np.int64),
        split_features=np.asarray(split_features, dtype=np.int32),
        thresholds=np.asarray(thresholds, dtype=np.float32),
        default_left=np.asarray(default_left, dtype=np.bool_),
        tree_leaf_starts=np.asarray(tree_leaf_starts, dtype=np.int64),
        leaf_step_starts=np.asarray(leaf_step_starts, dtype=np.int64),
        step_splits=np.asarray(step_splits, dtype=np.int32),
        step_left=np.asarray(step_left, dtype=np.bool_),
        leaf_feature_starts=feature_starts,
        leaf_slots=leaf_slots,
        leaf_table_starts=table_starts,
        tables=tables,
        tree_feature_starts=np.asarray(tree_feature_starts, dtype=np.int64),
        tree_features=np.asarray(tree_features, dtype=np.int32),
        depth=depth,
        bias=bias,
        n_features=n_features,
    )


def _mean_value(tree: _TreeArrays, node: int) -> np.float32:
    """The cover-weighted mean of the leaves under ``node``, in XGBoost's float32 steps."""
    child_left, child_right = tree.left[node], tree.right[node]
    if child_left == -1:
        return np.float32(tree.condition[node])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _mean_value(tree, child_left) * tree.cover[child_left]
        mean = mean + _mean_value(tree, child_right) * tree.cover[child_right]
        return np.float32(mean / tree.cover[node])


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
