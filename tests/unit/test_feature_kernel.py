"""The compiled feature pass against the same formulas written as numpy expressions.

``assemble`` computes transaction and card columns in one compiled
loop. The reference below states each formula over whole columns, the way the
feature definitions read; both must agree bit for bit (float32, NaN where the
other has NaN) on any primitives, including empty windows, zero spreads and
timestamps before 1970.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.features import FEATURES
from pipeline.features.derive import assemble, assemble_windows
from pipeline.features.errors import FeatureError
from pipeline.features.primitives import CardPrimitives
from pipeline.features.spec import CARD_WINDOWS_MS, DAY_MS, HOUR_MS, FeatureSpec
from pipeline.features.terminal import TerminalPrimitives

F64 = npt.NDArray[np.float64]
MONTH_MS = 30 * DAY_MS


def reference(spec: FeatureSpec, ts: npt.NDArray[np.int64], amount: F64, p: CardPrimitives) -> F64:
    """One column, as numpy expressions over the whole batch."""
    w = spec.window_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.stat == "amount":
            return amount
        days = np.floor_divide(ts, DAY_MS)
        if spec.stat == "is_weekend":
            return (((days + 3) % 7) >= 5).astype(np.float64)
        if spec.stat == "is_night":
            night: F64 = ((ts - days * DAY_MS) // HOUR_MS <= 6).astype(np.float64)
            return night
        if spec.stat == "seconds_since_previous":
            return p.gap_ms / 1000.0
        n = p.count[w].astype(np.float64)
        if spec.stat == "count":
            return n + 1.0
        if spec.stat == "mean_amount":
            return (p.total[w] + amount) / (n + 1.0)
        prev_mean = np.where(n > 0, p.total[w] / n, np.nan)
        if spec.stat == "amount_to_mean":
            return amount / np.maximum(prev_mean, 0.01)
        if spec.stat == "amount_zscore":
            var = np.maximum(p.total_sq[w] / n - prev_mean * prev_mean, 0.0)
            zscore: F64 = (amount - prev_mean) / np.sqrt(var + 1.0)
            return zscore
        if spec.stat == "amount_to_max":
            return amount / np.maximum(p.max_amount[w], 0.01)
        if spec.stat == "max_to_mean":
            n_long = p.count[MONTH_MS].astype(np.float64)
            long_mean = np.where(n_long > 0, p.total[MONTH_MS] / n_long, np.nan)
            return p.max_amount[w] / np.maximum(long_mean, 0.01)
    raise AssertionError(spec)


def random_primitives(rng: np.random.Generator, n: int) -> CardPrimitives:
    """Windows that may be empty, hold one row, or hold rows of equal amounts."""
    count = {w: rng.choice([0, 1, 2, 7, 300], n).astype(np.int64) for w in CARD_WINDOWS_MS}
    total, total_sq, max_amount = {}, {}, {}
    for w in CARD_WINDOWS_MS:
        mean = rng.choice([0.0, 0.005, 1.0, 57.3, 1e6], n) * rng.random(n)
        spread = rng.choice([0.0, 0.0, 1.0, 400.0], n)
        total[w] = count[w] * mean
        # Rounding can make sum(x^2)/n fall just below mean^2: the variance floor.
        total_sq[w] = count[w] * (mean * mean + spread)
        max_amount[w] = np.where(count[w] > 0, mean * rng.choice([1.0, 3.0], n), np.nan)
    gap = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 10**9, n).astype(np.float64))
    return CardPrimitives(count, total, total_sq, max_amount, gap)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300))
def test_every_column_matches_the_numpy_formulas(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    ts = rng.integers(-5 * 365 * DAY_MS, 60 * 365 * DAY_MS, n).astype(np.int64)
    amount = rng.choice([0.0, 0.01, 3.5, 250.0, 1e7], n) * rng.random(n)
    prims = random_primitives(rng, n)
    got = assemble(ts, amount, prims, None)
    for column, spec in enumerate(FEATURES):
        if spec.entity == "terminal":
            assert np.isnan(got[:, column]).all(), spec.name
            continue
        want = reference(spec, ts, amount, prims).astype(np.float32)
        np.testing.assert_array_equal(got[:, column], want, err_msg=spec.name)


def random_batch(seed: int, n: int) -> tuple[npt.NDArray[np.int64], F64, CardPrimitives]:
    """Times, amounts and primitives of ``n`` rows."""
    rng = np.random.default_rng(seed)
    ts = rng.integers(0, 400 * DAY_MS, n).astype(np.int64)
    amount = rng.random(n) * 100
    return ts, amount, random_primitives(rng, n)


def test_any_subset_and_order_of_features() -> None:
    """The columns follow the tuple given, windows outside the default set included."""
    n = 50
    ts, amount, prims = random_batch(5, n)
    chosen = (
        FeatureSpec("m7", "card", "max_to_mean", 7 * DAY_MS),
        FeatureSpec("night", "transaction", "is_night"),
        FeatureSpec("c1h", "card", "count", HOUR_MS),
        FeatureSpec("z1d", "card", "amount_zscore", DAY_MS),
    )
    got = assemble(ts, amount, prims, None, chosen)
    assert got.shape == (n, 4)
    for column, spec in enumerate(chosen):
        want = reference(spec, ts, amount, prims).astype(np.float32)
        np.testing.assert_array_equal(got[:, column], want, err_msg=spec.name)


def test_terminal_columns_come_from_the_terminal_primitives() -> None:
    n = 3
    prims = random_primitives(np.random.default_rng(1), n)
    terminal = TerminalPrimitives(
        count={w: np.array([0, 4, 10]) for w in (DAY_MS, 7 * DAY_MS, MONTH_MS)},
        frauds={w: np.array([0, 1, 5]) for w in (DAY_MS, 7 * DAY_MS, MONTH_MS)},
        known_fraud_age_ms=np.array([np.nan, DAY_MS, 2.5 * DAY_MS]),
    )
    specs = (
        FeatureSpec("rate", "terminal", "fraud_rate", 7 * DAY_MS),
        FeatureSpec("age", "terminal", "days_since_known_fraud", MONTH_MS),
        FeatureSpec("amount", "transaction", "amount"),
    )
    got = assemble(np.zeros(n, np.int64), np.array([1.0, 2.0, 3.0]), prims, terminal, specs)
    np.testing.assert_array_equal(got[:, 0], np.array([0.0, 0.25, 0.5], np.float32))
    np.testing.assert_array_equal(got[:, 1], np.array([np.nan, 1.0, 2.5], np.float32))
    np.testing.assert_array_equal(got[:, 2], np.array([1.0, 2.0, 3.0], np.float32))


def stacked(prims: CardPrimitives, windows: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    return tuple(
        np.stack([per_window[w] for w in windows])
        for per_window in (prims.count, prims.total, prims.total_sq, prims.max_amount)
    )


def test_stacked_primitives_in_any_window_order_give_the_same_matrix() -> None:
    """The online store hands its windows stacked in its own order, a row no feature
    reads included."""
    ts, amount, prims = random_batch(11, 40)
    want = assemble(ts, amount, prims, None)
    unread = 2 * HOUR_MS
    windows = (unread, *reversed(CARD_WINDOWS_MS))
    rows = [
        np.vstack([np.full((1, 40), 7, part.dtype), part]) for part in stacked(prims, windows[1:])
    ]
    got = assemble_windows(ts, amount, windows, *rows, prims.gap_ms, None)
    np.testing.assert_array_equal(got, want)


def test_stacked_primitives_without_a_window_in_use_are_refused() -> None:
    prims = random_primitives(np.random.default_rng(2), 3)
    windows = (HOUR_MS, DAY_MS)  # the features use 7 and 30 days as well
    with pytest.raises(FeatureError, match="lack the windows"):
        assemble_windows(
            np.zeros(3, np.int64), np.ones(3), windows, *stacked(prims, windows), prims.gap_ms, None
        )


@pytest.mark.parametrize(
    "spec", [FeatureSpec("x", "card", "median", DAY_MS), FeatureSpec("y", "transaction", "hour")]
)
def test_an_unknown_statistic_is_refused(spec: FeatureSpec) -> None:
    prims = random_primitives(np.random.default_rng(0), 1)
    with pytest.raises(FeatureError, match="unknown"):
        assemble(np.zeros(1, np.int64), np.ones(1), prims, None, (spec,))
