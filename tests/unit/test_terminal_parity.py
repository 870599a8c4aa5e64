"""Online terminal features equal the offline evaluator's.

The job's state is fed a simulated stream in event-time steps (transactions,
and each transaction's label at ``timestamp + delay``), publishing after every
step into a table. Invariant: after the publication as of clock ``C`` the
table holds every transaction with ``ts <= C - delay`` with its final label,
so any transaction at ``t <= C`` (window end ``t - delay``) gets exactly the
offline features. Each step's transactions are scored right after the step's
publication, as a scorer just behind the job would.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.simulator import SimulatorConfig, simulate
from pipeline.features.derive import terminal_feature_frame
from pipeline.features.offline import feature_frame, timestamps_to_ms
from pipeline.features.spec import DAY_MS, FEATURES, HOUR_MS
from pipeline.features.terminal import TerminalHistory, TerminalPrimitives
from pipeline.terminal import HistoryStore, TerminalState, histories_from_frame

DELAY = 7 * DAY_MS
TERMINAL_COLUMNS = [spec.name for spec in FEATURES if spec.entity == "terminal"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    config = SimulatorConfig(
        n_customers=150, n_terminals=60, n_days=50, seed=11, start_date=dt.date(2018, 4, 1)
    )
    return simulate(config)


@pytest.fixture(scope="module")
def offline(frame: pd.DataFrame) -> tuple[TerminalPrimitives, pd.DataFrame]:
    ts = timestamps_to_ms(frame["timestamp"])
    terminal = frame["terminal_id"].to_numpy(np.int64)
    history = TerminalHistory(terminal, ts, frame["is_fraud"].to_numpy(np.int64))
    prims = history.primitives(terminal, ts, DELAY)
    return prims, feature_frame(frame, DELAY)[TERMINAL_COLUMNS]


def assert_same(online: TerminalPrimitives, offline: TerminalPrimitives, rows: np.ndarray) -> None:
    for w, counts in offline.count.items():
        np.testing.assert_array_equal(online.count[w], counts[rows])
        np.testing.assert_array_equal(online.frauds[w], offline.frauds[w][rows])
    np.testing.assert_array_equal(online.known_fraud_age_ms, offline.known_fraud_age_ms[rows])


def test_streamed_histories_give_the_offline_features(
    frame: pd.DataFrame, offline: tuple[TerminalPrimitives, pd.DataFrame]
) -> None:
    offline_prims, offline_features = offline
    rng = np.random.default_rng(0)
    ts = timestamps_to_ms(frame["timestamp"])
    tx = frame["transaction_id"].to_numpy(np.int64)
    terminal = frame["terminal_id"].to_numpy(np.int64)
    fraud = frame["is_fraud"].to_numpy(bool)
    label_ts = ts + DELAY
    state = TerminalState(DELAY)  # default retention: trimming happens over 50 days
    store = HistoryStore(DELAY, rebuild_interval_s=0.0)
    step = 6 * HOUR_MS
    checked = 0
    online_rows: list[np.ndarray] = []
    online_values: list[pd.DataFrame] = []
    for end in range(int(ts.min()) - int(ts.min()) % step + step, int(ts.max()) + step, step):
        in_step = np.flatnonzero((ts > end - step) & (ts <= end))
        labels = np.flatnonzero((label_ts > end - step) & (label_ts <= end))
        if rng.random() < 0.5:  # labels and transactions of a step come in either order
            state.add_labels(tx[labels], fraud[labels], label_ts[labels])
            state.add_transactions(tx[in_step], ts[in_step], terminal[in_step])
        else:
            state.add_transactions(tx[in_step], ts[in_step], terminal[in_step])
            state.add_labels(tx[labels], fraud[labels], label_ts[labels])
        if (end // DAY_MS) != ((end - step) // DAY_MS):
            state.trim()
        publication = state.collect()
        for gone in publication.tombstones:
            store.remove(gone)
        for record in publication.records:
            store.apply(record)
        if len(in_step) == 0:
            continue
        if len(store):  # the table's histories are complete up to the window ends needed
            assert store.as_of_ms is not None and store.as_of_ms >= ts[in_step].max()
        online = store.primitives(terminal[in_step], ts[in_step])
        assert_same(online, offline_prims, in_step)
        online_rows.append(in_step)
        online_values.append(terminal_feature_frame(online))
        checked += len(in_step)
    assert checked == len(frame)
    assert state.counts.trimmed > 0  # the retention was exercised
    assert offline_prims.frauds[30 * DAY_MS].sum() > 0  # and known frauds were there to count
    rows = np.concatenate(online_rows)
    values = pd.concat(online_values, ignore_index=True).astype(np.float32)
    np.testing.assert_array_equal(
        values[TERMINAL_COLUMNS].to_numpy(), offline_features.to_numpy()[rows]
    )


def test_backfill_snapshot_gives_the_offline_features_for_the_whole_file(
    frame: pd.DataFrame, offline: tuple[TerminalPrimitives, pd.DataFrame]
) -> None:
    store = HistoryStore(DELAY)
    for record in histories_from_frame(frame, DELAY):
        assert np.all(record.ts_ms <= record.as_of_ms - DELAY)
        store.apply(record)
    ts = timestamps_to_ms(frame["timestamp"])
    online = store.primitives(frame["terminal_id"].to_numpy(np.int64), ts)
    assert_same(online, offline[0], np.arange(len(frame)))


def test_backfill_snapshot_equals_the_streamed_state(frame: pd.DataFrame) -> None:
    ts = timestamps_to_ms(frame["timestamp"])
    tx = frame["transaction_id"].to_numpy(np.int64)
    state = TerminalState(DELAY, retention_ms=None)
    state.add_transactions(tx, ts, frame["terminal_id"].to_numpy(np.int64))
    state.add_labels(tx, frame["is_fraud"].to_numpy(bool), ts + DELAY)
    streamed = {r.terminal_id: r for r in state.collect().records}
    snapshot = {r.terminal_id: r for r in histories_from_frame(frame, DELAY)}
    assert streamed.keys() == snapshot.keys()
    for terminal, record in snapshot.items():
        assert streamed[terminal].as_of_ms == record.as_of_ms
        np.testing.assert_array_equal(streamed[terminal].ts_ms, record.ts_ms)
        np.testing.assert_array_equal(streamed[terminal].is_fraud, record.is_fraud)
