"""Feature values from primitives: the one set of formulas both evaluators share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features.errors import FeatureError
from pipeline.features.primitives import CardPrimitives
from pipeline.features.spec import (
    DAY_MS,
    FEATURES,
    HOUR_MS,
    FeatureSpec,
)
from pipeline.features.terminal import TerminalPrimitives

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Denominators never go below this (amounts are in currency units).
_MIN_AMOUNT = 0.01
_LONG_MS = 30 * DAY_MS


def transaction_value(spec: FeatureSpec, ts_ms: I64, amount: F64) -> F64:
    """Features of the transaction alone (amount, calendar; timestamps are UTC)."""
    if spec.stat == "amount":
        return amount.astype(np.float64)
    days = np.floor_divide(ts_ms, DAY_MS)
    if spec.stat == "is_weekend":
        return (((days + 3) % 7) >= 5).astype(np.float64)  # 1970-01-01 was a Thursday
    if spec.stat == "is_night":
        night: F64 = ((ts_ms - days * DAY_MS) // HOUR_MS <= 6).astype(np.float64)
        return night
    raise FeatureError(f"unknown transaction statistic {spec.stat!r}")


def card_value(spec: FeatureSpec, amount: F64, prims: CardPrimitives) -> F64:
    """Card features; windows include the current transaction where they count it."""
    w = spec.window_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.stat == "seconds_since_previous":
            return prims.gap_ms / 1000.0
        n = prims.count[w].astype(np.float64)
        if spec.stat == "count":
            return n + 1.0
        if spec.stat == "mean_amount":
            return (prims.total[w] + amount) / (n + 1.0)
        prev_mean = np.where(n > 0, prims.total[w] / n, np.nan)
        if spec.stat == "amount_to_mean":
            return amount / np.maximum(prev_mean, _MIN_AMOUNT)
        if spec.stat == "amount_zscore":
            var = np.maximum(prims.total_sq[w] / n - prev_mean * prev_mean, 0.0)
            # +1 inside the root: a smooth floor of one currency unit on the spread.
            zscore: F64 = (amount - prev_mean) / np.sqrt(var + 1.0)
            return zscore
        if spec.stat == "amount_to_max":
            return amount / np.maximum(prims.max_amount[w], _MIN_AMOUNT)
        if spec.stat == "max_to_mean":
            n_long = prims.count[_LONG_MS].astype(np.float64)
            long_mean = np.where(n_long > 0, prims.total[_LONG_MS] / n_long, np.nan)
            return prims.max_amount[w] / np.maximum(long_mean, _MIN_AMOUNT)
    raise FeatureError(f"unknown card statistic {spec.stat!r}")


def terminal_value(spec: FeatureSpec, prims: TerminalPrimitives) -> F64:
    """Terminal features (their windows already end a label delay back)."""
    w = spec.window_ms
    if spec.stat == "days_since_known_fraud":
        return prims.known_fraud_age_ms / DAY_MS
    count = prims.count[w].astype(np.float64)
    frauds = prims.frauds[w].astype(np.float64)
    if spec.stat == "count":
        return count
    if spec.stat == "fraud_count":
        return frauds
    if spec.stat == "fraud_rate":
        return np.divide(frauds, count, out=np.zeros_like(frauds), where=count > 0)
    raise FeatureError(f"unknown terminal statistic {spec.stat!r}")


def assemble(
    ts_ms: I64,
    amount: F64,
    card: CardPrimitives,
    terminal: TerminalPrimitives | None,
    features: tuple[FeatureSpec, ...] = FEATURES,
) -> F32:
    """The float32 feature matrix, columns in ``features`` order.

    ``terminal=None`` leaves terminal columns NaN (e.g. a scorer whose terminal
    table is not loaded yet); the model treats them as missing.
    """
    out = np.empty((len(ts_ms), len(features)), dtype=np.float32)
    for j, spec in enumerate(features):
        if spec.entity == "transaction":
            out[:, j] = transaction_value(spec, ts_ms, amount)
        elif spec.entity == "card":
            out[:, j] = card_value(spec, amount, card)
        elif terminal is None:
            out[:, j] = np.nan
        else:
            out[:, j] = terminal_value(spec, terminal)
    return out


def terminal_feature_frame(
    prims: TerminalPrimitives, features: tuple[FeatureSpec, ...] = FEATURES
) -> pd.DataFrame:
    """Terminal feature columns only (what the nearline job publishes)."""
    return pd.DataFrame(
        {spec.name: terminal_value(spec, prims) for spec in features if spec.entity == "terminal"}
    )
