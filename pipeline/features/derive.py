"""Feature values from primitives: the one set of formulas both evaluators share."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features.errors import FeatureError
from pipeline.features.primitives import CardPrimitives
from pipeline.features.spec import (
    CARD_WINDOWS_MS,
    DAY_MS,
    FEATURES,
    HOUR_MS,
    FeatureSpec,
)
from pipeline.features.terminal import TerminalPrimitives
from pipeline.jit import kernel

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Denominators never go below this (amounts are in currency units).
_MIN_AMOUNT = 0.01
_LONG_MS = 30 * DAY_MS


# Column codes of the compiled evaluator (the kernel branches on these names).
_AMOUNT, _IS_WEEKEND, _IS_NIGHT = 0, 1, 2
_GAP, _COUNT, _MEAN, _TO_MEAN, _ZSCORE, _TO_MAX, _MAX_TO_MEAN = 3, 4, 5, 6, 7, 8, 9
_CODES = {
    ("transaction", "amount"): _AMOUNT,
    ("transaction", "is_weekend"): _IS_WEEKEND,
    ("transaction", "is_night"): _IS_NIGHT,
    ("card", "seconds_since_previous"): _GAP,
    ("card", "count"): _COUNT,
    ("card", "mean_amount"): _MEAN,
    ("card", "amount_to_mean"): _TO_MEAN,
    ("card", "amount_zscore"): _ZSCORE,
    ("card", "amount_to_max"): _TO_MAX,
    ("card", "max_to_mean"): _MAX_TO_MEAN,
}
_TERMINAL = -1  # a column the compiled pass leaves to terminal_value


@dataclass(frozen=True)
class _Plan:
    """How :func:`assemble` fills each column of one feature tuple."""

    codes: I64  # per column: a code of _CODES, or _TERMINAL
    window_index: I64  # per column: row of the stacked card windows (0 if none)
    windows: tuple[int, ...]  # card windows stacked, in that order
    long_index: int  # row of the 30-day window (max_to_mean's baseline), -1 if unused
    terminal: tuple[tuple[int, FeatureSpec], ...]  # (column, spec) left to terminal_value


@functools.lru_cache(maxsize=32)
def _plan(features: tuple[FeatureSpec, ...]) -> _Plan:
    windows: list[int] = []

    def window(w: int) -> int:
        if w not in windows:
            windows.append(w)
        return windows.index(w)

    codes, index, terminal = [], [], []
    uses_long = False
    for column, spec in enumerate(features):
        if spec.entity == "terminal":
            codes.append(_TERMINAL)
            index.append(0)
            terminal.append((column, spec))
            continue
        code = _CODES.get((spec.entity, spec.stat))
        if code is None:
            raise FeatureError(f"unknown {spec.entity} statistic {spec.stat!r}")
        needs_window = spec.entity == "card" and spec.stat != "seconds_since_previous"
        codes.append(code)
        index.append(window(spec.window_ms) if needs_window else 0)
        uses_long = uses_long or spec.stat == "max_to_mean"
    long_index = window(_LONG_MS) if uses_long else -1
    return _Plan(
        codes=np.asarray(codes, np.int64),
        window_index=np.asarray(index, np.int64),
        windows=tuple(windows),
        long_index=long_index,
        terminal=tuple(terminal),
    )


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

    Transaction and card columns come from one compiled pass
    (:func:`_card_columns`, the only place their formulas live); terminal
    columns from :func:`terminal_value`. ``terminal=None`` leaves terminal
    columns NaN (e.g. a scorer whose terminal table is not loaded yet); the
    model treats them as missing.
    """
    windows = _plan(tuple(features)).windows
    n = len(ts_ms)

    def stacked(per_window: dict[int, npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
        if not windows:
            return np.zeros((0, n), dtype)
        return np.stack([per_window[w] for w in windows]).astype(dtype, copy=False)

    return assemble_windows(
        ts_ms, amount, windows,
        stacked(card.count, np.int64), stacked(card.total, np.float64),
        stacked(card.total_sq, np.float64), stacked(card.max_amount, np.float64),
        card.gap_ms, terminal, features,
    )  # fmt: skip


def assemble_windows(
    ts_ms: I64,
    amount: F64,
    windows: tuple[int, ...],
    count: I64,
    total: F64,
    total_sq: F64,
    max_amount: F64,
    gap_ms: F64,
    terminal: TerminalPrimitives | None,
    features: tuple[FeatureSpec, ...] = FEATURES,
) -> F32:
    """:func:`assemble` from card primitives already stacked: row ``k`` of ``count``,
    ``total``, ``total_sq`` and ``max_amount`` (each windows x rows) is window
    ``windows[k]``, as the online store computes them (no per-window copies)."""
    plan = _plan(tuple(features))
    window_index, long_index = _window_rows(tuple(features), tuple(windows))
    n = len(ts_ms)
    out = np.empty((n, len(features)), dtype=np.float32)
    _card_columns(
        plan.codes, window_index, long_index,
        np.ascontiguousarray(ts_ms, np.int64), np.ascontiguousarray(amount, np.float64),
        np.ascontiguousarray(count, np.int64), np.ascontiguousarray(total, np.float64),
        np.ascontiguousarray(total_sq, np.float64), np.ascontiguousarray(max_amount, np.float64),
        np.ascontiguousarray(gap_ms, np.float64), out,
    )  # fmt: skip
    for column, spec in plan.terminal:
        out[:, column] = np.nan if terminal is None else terminal_value(spec, terminal)
    return out


@functools.lru_cache(maxsize=32)
def _window_rows(features: tuple[FeatureSpec, ...], windows: tuple[int, ...]) -> tuple[I64, int]:
    """The columns' window references as rows of primitives stacked in ``windows`` order."""
    plan = _plan(features)
    missing = sorted(set(plan.windows) - set(windows))
    if missing:
        raise FeatureError(f"card primitives lack the windows {missing} (ms) these features use")
    rows = np.asarray([windows.index(w) for w in plan.windows] or [0], np.int64)
    long_index = int(rows[plan.long_index]) if plan.long_index >= 0 else -1
    return rows[plan.window_index], long_index


@kernel
def _floored(value: float) -> float:  # pragma: no cover - compiled
    """``max(value, _MIN_AMOUNT)``, NaN staying NaN (as ``np.maximum``)."""
    return value if (value != value or value > _MIN_AMOUNT) else _MIN_AMOUNT


@kernel
def _card_columns(  # pragma: no cover - compiled
    codes: I64,
    window_index: I64,
    long_index: int,
    ts_ms: I64,
    amount: F64,
    count: I64,
    total: F64,
    total_sq: F64,
    max_amount: F64,
    gap_ms: F64,
    out: F32,
) -> None:
    """Transaction and card feature values of every row (float64, stored as float32).

    One column at a time, so each formula is a branch-free loop over the rows.
    Windows count the current transaction where a statistic includes it
    (``count``, ``mean_amount``); the others compare it with the earlier rows.
    """
    nan = np.nan
    n_rows = len(ts_ms)
    for column in range(len(codes)):
        code = codes[column]
        w = window_index[column]
        if code < 0:
            continue
        if code == _AMOUNT:
            for row in range(n_rows):
                out[row, column] = amount[row]
        elif code == _IS_WEEKEND:  # 1970-01-01 was a Thursday; UTC
            for row in range(n_rows):
                out[row, column] = 1.0 if ((ts_ms[row] // DAY_MS) + 3) % 7 >= 5 else 0.0
        elif code == _IS_NIGHT:  # hour <= 6
            for row in range(n_rows):
                t = ts_ms[row]
                out[row, column] = 1.0 if (t - (t // DAY_MS) * DAY_MS) // HOUR_MS <= 6 else 0.0
        elif code == _GAP:  # seconds since the previous (NaN for a card's first row)
            for row in range(n_rows):
                out[row, column] = gap_ms[row] / 1000.0
        elif code == _COUNT:  # this transaction included
            for row in range(n_rows):
                out[row, column] = float(count[w, row]) + 1.0
        elif code == _MEAN:  # this transaction included
            for row in range(n_rows):
                out[row, column] = (total[w, row] + amount[row]) / (float(count[w, row]) + 1.0)
        elif code == _TO_MEAN:
            for row in range(n_rows):
                n = float(count[w, row])
                out[row, column] = amount[row] / _floored(total[w, row] / n if n > 0 else nan)
        elif code == _ZSCORE:  # +1 in the root: a smooth one-unit floor
            for row in range(n_rows):
                n = float(count[w, row])
                if n > 0:
                    mean = total[w, row] / n
                    var = total_sq[w, row] / n - mean * mean
                    var = var if (var != var or var > 0.0) else 0.0
                    out[row, column] = (amount[row] - mean) / np.sqrt(var + 1.0)
                else:
                    out[row, column] = nan
        elif code == _TO_MAX:  # NaN when the window is empty
            for row in range(n_rows):
                out[row, column] = amount[row] / _floored(max_amount[w, row])
        else:  # _MAX_TO_MEAN: the window's max against the 30-day mean
            for row in range(n_rows):
                n_long = float(count[long_index, row])
                long_mean = total[long_index, row] / n_long if n_long > 0 else nan
                out[row, column] = max_amount[w, row] / _floored(long_mean)


def warm_up() -> None:
    """Compile (or load from numba's cache) the feature kernel."""
    prims = CardPrimitives(
        count={w: np.zeros(1, np.int64) for w in CARD_WINDOWS_MS},
        total={w: np.zeros(1) for w in CARD_WINDOWS_MS},
        total_sq={w: np.zeros(1) for w in CARD_WINDOWS_MS},
        max_amount={w: np.full(1, np.nan) for w in CARD_WINDOWS_MS},
        gap_ms=np.full(1, np.nan),
    )
    assemble(np.zeros(1, np.int64), np.ones(1), prims, None)


def terminal_feature_frame(
    prims: TerminalPrimitives, features: tuple[FeatureSpec, ...] = FEATURES
) -> pd.DataFrame:
    """Terminal feature columns only (what the nearline job publishes)."""
    return pd.DataFrame(
        {spec.name: terminal_value(spec, prims) for spec in features if spec.entity == "terminal"}
    )
