"""Offline evaluator: every feature of every row of a transactions DataFrame.

Vectorized over the whole frame (no per-row Python): card windows through one
grouped cumulative-sum/searchsorted pass, terminal windows through
:class:`~pipeline.features.terminal.TerminalHistory`. Rows are processed in
timestamp order (ties in row order), exactly as the online evaluator sees them
in a replay; the result is aligned with the input rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features.derive import assemble
from pipeline.features.errors import FeatureError
from pipeline.features.primitives import grouped_card_primitives
from pipeline.features.spec import DEFAULT_LABEL_DELAY_MS, FEATURES, FeatureSpec
from pipeline.features.terminal import TerminalHistory

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

REQUIRED_COLUMNS = ("timestamp", "card_id", "terminal_id", "amount")


def timestamps_to_ms(values: pd.Series) -> I64:
    """Epoch milliseconds of a datetime column (tz-aware values are taken as UTC)."""
    series = pd.to_datetime(values, utc=True)
    ns: I64 = series.dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64)
    return ns // 1_000_000


def feature_matrix(
    df: pd.DataFrame,
    label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
    features: tuple[FeatureSpec, ...] = FEATURES,
) -> F32:
    """Float32 matrix (rows of ``df``, columns ``features``).

    Terminal fraud features use ``is_fraud`` of transactions at least
    ``label_delay_ms`` older than each row; without an ``is_fraud`` column no
    label is known and those rates are 0.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise FeatureError(f"transactions lack column(s): {', '.join(missing)}")
    n = len(df)
    if n == 0:
        return np.zeros((0, len(features)), dtype=np.float32)
    ts = timestamps_to_ms(df["timestamp"])
    card = df["card_id"].to_numpy(np.int64)
    amount = df["amount"].to_numpy(np.float64)
    if np.isnan(amount).any():
        raise FeatureError("amount has missing values")
    time_order = np.argsort(ts, kind="stable")
    by_card = time_order[np.argsort(card[time_order], kind="stable")]
    card_prims = grouped_card_primitives(card[by_card], ts[by_card], amount[by_card])
    back = np.empty(n, dtype=np.int64)
    back[by_card] = np.arange(n)
    card_prims = card_prims.take(back)
    terminal = df["terminal_id"].to_numpy(np.int64)
    if "is_fraud" in df.columns:
        fraud = df["is_fraud"].fillna(0).to_numpy(np.int64)
    else:
        fraud = np.zeros(n, np.int64)
    history = TerminalHistory(terminal, ts, fraud)
    terminal_prims = history.primitives(terminal, ts, label_delay_ms)
    return assemble(ts, amount, card_prims, terminal_prims, features)


def feature_frame(
    df: pd.DataFrame,
    label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
    features: tuple[FeatureSpec, ...] = FEATURES,
) -> pd.DataFrame:
    """:func:`feature_matrix` as a DataFrame with the feature names and ``df``'s index."""
    return pd.DataFrame(
        feature_matrix(df, label_delay_ms, features),
        columns=[spec.name for spec in features],
        index=df.index,
    )
