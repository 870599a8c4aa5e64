"""Feature definitions: offline/online parity, leakage, state serialization."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.features import (
    FEATURE_NAMES,
    FEATURES,
    CardStateStore,
    FeatureError,
    TerminalHistory,
    feature_frame,
    feature_matrix,
    terminal_aggregates_as_of,
    timestamps_to_ms,
)
from pipeline.features.spec import DAY_MS, HOUR_MS

DELAY = 7 * DAY_MS
CARD_COLUMNS = [i for i, spec in enumerate(FEATURES) if spec.entity != "terminal"]
TERMINAL_COLUMNS = [i for i, spec in enumerate(FEATURES) if spec.entity == "terminal"]


def make_frame(
    seed: int, n: int = 400, days: int = 60, cards: int = 6, terminals: int = 5
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, days * DAY_MS, n))
    if n > 8:
        ts[5:9] = ts[5]  # ties
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "timestamp": pd.to_datetime(1_522_540_800_000 + ts, unit="ms"),
            "card_id": rng.integers(0, cards, n),
            "terminal_id": rng.integers(0, terminals, n),
            "amount": np.round(rng.gamma(2.0, 30.0, n), 2),
            "is_fraud": (rng.random(n) < 0.2).astype(np.int8),
        }
    )


def online_matrix(df: pd.DataFrame, cuts: list[int]) -> np.ndarray:
    """Card/transaction features through the online store, in batches split at ``cuts``."""
    store = CardStateStore()
    ts = timestamps_to_ms(df["timestamp"])
    parts = []
    bounds = [0, *sorted(set(cuts)), len(df)]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            parts.append(
                store.features(
                    df["card_id"].to_numpy()[lo:hi], ts[lo:hi], df["amount"].to_numpy()[lo:hi], None
                )
            )
    return np.vstack(parts)


def test_hand_computed_card_windows() -> None:
    base = pd.Timestamp("2018-04-02 10:00")  # a Monday
    df = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3, 4],
            "timestamp": [
                base,
                base + pd.Timedelta("30min"),
                base + pd.Timedelta("2D"),
                base + pd.Timedelta("2D"),
            ],
            "card_id": [7, 7, 7, 8],
            "terminal_id": [1, 1, 2, 2],
            "amount": [10.0, 30.0, 100.0, 5.0],
            "is_fraud": [0, 0, 1, 0],
        }
    )
    f = feature_frame(df)
    assert f["card_count_1h"].tolist() == [1, 2, 1, 1]
    assert f["card_count_1d"].tolist() == [1, 2, 1, 1]
    assert f["card_count_7d"].tolist() == [1, 2, 3, 1]
    assert f["card_mean_amount_7d"].iloc[2] == pytest.approx(140 / 3)
    assert f["card_amount_to_mean_30d"].iloc[2] == pytest.approx(100 / 20)
    assert f["card_amount_to_max_30d"].iloc[2] == pytest.approx(100 / 30)
    assert f["card_seconds_since_previous"].iloc[1] == pytest.approx(1800)
    assert np.isnan(f["card_seconds_since_previous"].iloc[0])
    assert f["is_weekend"].tolist() == [0, 0, 0, 0]
    assert f["terminal_count_7d"].tolist() == [0, 0, 0, 0]  # nothing is 7 days old yet


def test_terminal_window_ends_label_delay_back() -> None:
    history = TerminalHistory(
        np.array([1, 1, 1]), np.array([0, DAY_MS, 2 * DAY_MS]), np.array([1, 0, 1])
    )
    as_of = np.array([DELAY + DAY_MS + 1])  # window (1 ms, DAY_MS + 1]
    prims = history.primitives(np.array([1]), as_of, DELAY)
    assert prims.count[DAY_MS].tolist() == [1]
    assert prims.frauds[DAY_MS].tolist() == [0]
    assert prims.count[7 * DAY_MS].tolist() == [2]
    assert prims.frauds[7 * DAY_MS].tolist() == [1]
    assert prims.known_fraud_age_ms[0] == pytest.approx(DELAY + DAY_MS + 1)
    unknown = history.primitives(np.array([99]), as_of, DELAY)
    assert unknown.count[DAY_MS].tolist() == [0] and np.isnan(unknown.known_fraud_age_ms[0])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 300),
    windows=st.lists(st.integers(1, 40 * DAY_MS), min_size=1, max_size=4),
    delay=st.sampled_from([0, DAY_MS, DELAY]),
)
def test_terminal_windows_equal_their_definition(
    seed: int, n: int, windows: list[int], delay: int
) -> None:
    """Every count, fraud count and last-fraud age, against the definition row by row
    (windows in any order, ties in time, unknown terminals, queries before any row)."""
    from pipeline.features.spec import TERMINAL_FRAUD_LOOKBACK_MS

    rng = np.random.default_rng(seed)
    terminal = rng.integers(0, 6, n)
    ts = rng.integers(0, 60 * DAY_MS, n) // HOUR_MS * HOUR_MS  # hours: many ties
    fraud = (rng.random(n) < 0.2).astype(np.int64)
    history = TerminalHistory(terminal, ts, fraud)
    query = rng.integers(0, 8, 50)  # 6 and 7 are unknown
    as_of = rng.integers(-DAY_MS, 75 * DAY_MS, 50) // HOUR_MS * HOUR_MS
    prims = history.primitives(query, as_of, delay, tuple(windows))
    for i, (q, at) in enumerate(zip(query.tolist(), as_of.tolist(), strict=True)):
        end = at - max(delay, 1)
        mine = terminal == q
        for w in windows:
            inside = mine & (ts > end - w) & (ts <= end)
            assert prims.count[w][i] == inside.sum()
            assert prims.frauds[w][i] == (inside & (fraud > 0)).sum()
        known = ts[mine & (fraud > 0) & (ts <= end)]
        if len(known) and known.max() > end - TERMINAL_FRAUD_LOOKBACK_MS:
            assert prims.known_fraud_age_ms[i] == at - known.max()
        else:
            assert np.isnan(prims.known_fraud_age_ms[i])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 120),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_offline_online_parity(seed: int, n: int, cuts: list[int]) -> None:
    df = make_frame(seed, n=n, days=45, cards=4)
    offline = feature_matrix(df)[:, CARD_COLUMNS]
    online = online_matrix(df, [c for c in cuts if c < n])[:, CARD_COLUMNS]
    np.testing.assert_allclose(online, offline, rtol=2e-6, atol=1e-5, equal_nan=True)


def test_nearline_aggregates_match_offline_terminal_features() -> None:
    df = make_frame(3, n=600, days=50)
    as_of = df["timestamp"].iloc[450]
    labels = df[["transaction_id", "is_fraud"]]
    table = terminal_aggregates_as_of(df, labels, as_of)
    offline = feature_frame(df).iloc[450]
    row = table.loc[df["terminal_id"].iloc[450]]
    for name in table.columns:
        assert row[name] == pytest.approx(offline[name], nan_ok=True), name


def test_no_leakage_from_future_rows_or_immature_labels() -> None:
    df = make_frame(11, n=500, days=60)
    base = feature_matrix(df)
    cut = 300
    t_cut = df["timestamp"].iloc[cut]
    changed = df.copy()
    later = changed.index > cut
    changed.loc[later, "amount"] *= 7
    changed.loc[later, "is_fraud"] = 1 - changed.loc[later, "is_fraud"]
    # labels of transactions younger than the delay at t_cut are not known yet
    immature = (changed["timestamp"] > t_cut - pd.Timedelta(DELAY, "ms")) & ~later
    changed.loc[immature, "is_fraud"] = 1 - changed.loc[immature, "is_fraud"]
    after = feature_matrix(changed)
    # Exact for label-based columns; card sums may differ in the last float64 bits.
    np.testing.assert_array_equal(
        after[: cut + 1, TERMINAL_COLUMNS], base[: cut + 1, TERMINAL_COLUMNS]
    )
    np.testing.assert_allclose(after[: cut + 1], base[: cut + 1], rtol=1e-6, equal_nan=True)
    assert not np.array_equal(after[cut + 1 :], base[cut + 1 :], equal_nan=True)


def test_card_state_round_trips_through_bytes_and_dict() -> None:
    df = make_frame(5, n=200, days=40, cards=3)
    ts = timestamps_to_ms(df["timestamp"])
    card, amount = df["card_id"].to_numpy(), df["amount"].to_numpy()
    store = CardStateStore()
    store.update(card[:150], ts[:150], amount[:150])
    moved, via_dict = CardStateStore(), CardStateStore()
    for c in store.cards():
        moved.load_card(c, store.dump_card(c))
        via_dict.load_dict(c, store.to_dict(c))
    expected = store.features(card[150:], ts[150:], amount[150:], None)
    np.testing.assert_array_equal(
        moved.features(card[150:], ts[150:], amount[150:], None), expected
    )
    np.testing.assert_array_equal(
        via_dict.features(card[150:], ts[150:], amount[150:], None), expected
    )
    with pytest.raises(FeatureError):
        moved.load_card(1, b"junk")


def test_state_keeps_only_the_longest_window() -> None:
    store = CardStateStore()
    ts = np.array([0, DAY_MS, 40 * DAY_MS, 41 * DAY_MS])
    store.update(np.array([1, 1, 1, 1]), ts, np.ones(4))
    kept, _ = store.history(1)
    assert kept.tolist() == [40 * DAY_MS, 41 * DAY_MS]
    store.update(np.array([1]), np.array([100 * DAY_MS + HOUR_MS]), np.ones(1))
    assert store.history(1)[0].tolist() == [100 * DAY_MS + HOUR_MS]


def test_feature_names_unique_and_missing_columns_rejected() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    with pytest.raises(FeatureError, match="card_id"):
        feature_matrix(pd.DataFrame({"timestamp": [], "amount": [], "terminal_id": []}))
