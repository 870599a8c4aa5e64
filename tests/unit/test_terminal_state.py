"""The terminal-features job's state: maturity, labels, trimming, as_of semantics."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features.spec import DAY_MS, HOUR_MS
from pipeline.terminal import DEFAULT_RETENTION_MS, HistoryRecord, TerminalState
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.state import FEATURE_SPAN_MS

DELAY = 7 * DAY_MS
T0 = 1_600_000_000_000


def arr(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def add_tx(state: TerminalState, rows: list[tuple[int, int, int]]) -> None:
    tx, ts, terminal = (arr(*col) for col in zip(*rows, strict=True))
    state.add_transactions(tx, ts, terminal)


def label(state: TerminalState, tx: int, fraud: bool, at: int) -> None:
    state.add_labels(arr(tx), np.asarray([fraud]), arr(at))


def by_terminal(records: list[HistoryRecord]) -> dict[int, HistoryRecord]:
    return {r.terminal_id: r for r in records}


def test_nothing_is_published_before_it_matures() -> None:
    state = TerminalState(DELAY)
    add_tx(state, [(1, T0, 10), (2, T0 + HOUR_MS, 11)])
    assert state.collect().records == []
    add_tx(state, [(3, T0 + DELAY, 12)])  # clock reaches T0 + delay: tx 1 matures
    pub = state.collect()
    assert [r.terminal_id for r in pub.records] == [10]
    record = pub.records[0]
    assert record.as_of_ms == T0 + DELAY == state.clock_ms
    assert record.ts_ms.tolist() == [T0]
    assert record.is_fraud.tolist() == [0]
    assert record.label_delay_ms == DELAY


def test_every_published_timestamp_is_matured_and_sorted() -> None:
    rng = np.random.default_rng(1)
    state = TerminalState(DELAY)
    ts = np.sort(rng.integers(T0, T0 + 20 * DAY_MS, 500))
    shuffled = rng.permutation(500)  # arrival out of timestamp order
    state.add_transactions(
        np.arange(500)[shuffled], ts[shuffled], rng.integers(0, 5, 500)[shuffled]
    )
    for record in state.collect().records:
        assert np.all(record.ts_ms <= record.as_of_ms - DELAY)
        assert np.all(np.diff(record.ts_ms) >= 0)
    held = sum(
        len(r) for r in state.collect().records
    )  # nothing changed since: nothing republished
    assert held == 0


def test_label_before_maturity_is_in_the_first_publication() -> None:
    state = TerminalState(DELAY)
    add_tx(state, [(1, T0, 10), (2, T0 + 1, 10)])
    label(state, 2, True, T0 + DELAY)
    add_tx(state, [(3, T0 + DELAY + 1, 99)])
    record = by_terminal(state.collect().records)[10]
    assert record.ts_ms.tolist() == [T0, T0 + 1]
    assert record.is_fraud.tolist() == [0, 1]


def test_late_label_republishes_the_terminal() -> None:
    state = TerminalState(DELAY)
    add_tx(state, [(1, T0, 10), (2, T0 + DELAY, 11)])
    assert by_terminal(state.collect().records)[10].is_fraud.tolist() == [0]  # genuine by maturity
    label(state, 1, True, T0 + DELAY + DAY_MS)
    pub = state.collect()
    assert [r.terminal_id for r in pub.records] == [10]
    assert pub.records[0].is_fraud.tolist() == [1]
    label(state, 1, True, T0 + DELAY + DAY_MS)  # same label again: no change, no publication
    assert state.collect().records == []
    label(state, 1, False, T0 + DELAY + DAY_MS)  # a correction: the latest label wins
    assert state.collect().records[0].is_fraud.tolist() == [0]


def test_label_before_its_transaction_waits_for_it() -> None:
    state = TerminalState(DELAY)
    label(state, 5, True, T0)
    add_tx(state, [(5, T0, 10), (6, T0 + DELAY, 11)])
    assert by_terminal(state.collect().records)[10].is_fraud.tolist() == [1]
    assert state.counts.labels_pending == 1


def test_duplicate_transactions_count_once() -> None:
    state = TerminalState(DELAY)
    add_tx(state, [(1, T0, 10), (1, T0, 10), (2, T0 + DELAY, 11)])
    add_tx(state, [(1, T0, 10)])
    assert by_terminal(state.collect().records)[10].ts_ms.tolist() == [T0]
    assert state.counts.duplicates == 2


def test_only_changed_terminals_are_republished() -> None:
    state = TerminalState(DELAY)
    add_tx(state, [(1, T0, 10), (2, T0, 11), (3, T0 + DELAY, 12)])
    assert sorted(by_terminal(state.collect().records)) == [10, 11]
    add_tx(state, [(4, T0 + HOUR_MS, 11), (5, T0 + DELAY + HOUR_MS, 12)])
    pub = state.collect()
    assert [r.terminal_id for r in pub.records] == [11]
    assert pub.records[0].ts_ms.tolist() == [T0, T0 + HOUR_MS]


def test_trimming_drops_old_transactions_and_tombstones_empty_terminals() -> None:
    retention = DEFAULT_RETENTION_MS
    state = TerminalState(DELAY, retention)
    add_tx(state, [(1, T0, 10), (2, T0 + 20 * DAY_MS, 11), (3, T0 + 25 * DAY_MS, 10)])
    label(state, 99, True, T0)  # never matched
    state.collect()
    add_tx(state, [(4, T0 + DELAY + retention + 1, 12)])  # cutoff passes T0
    assert state.trim() == 1
    assert state.transactions_held() == 3
    pub = state.collect()
    assert pub.tombstones == []  # terminal 10 still holds tx 3
    assert 99 not in state._pending_labels
    add_tx(state, [(5, T0 + 26 * DAY_MS + DELAY + retention, 12)])  # cutoff passes day 25
    state.trim()
    pub = state.collect()
    assert pub.tombstones == [10, 11]
    assert len(state) == 1
    add_tx(state, [(6, T0 + DAY_MS, 13)])  # older than the retention: dropped on arrival
    assert state.counts.too_old == 1


def test_published_history_stays_within_the_retention() -> None:
    state = TerminalState(DELAY)
    days = 80
    add_tx(state, [(d, T0 + d * DAY_MS, 10) for d in range(days)])
    record = state.collect().records[0]
    bound = record.as_of_ms - DELAY
    assert record.ts_ms.min() > bound - DEFAULT_RETENTION_MS
    assert record.ts_ms.max() == bound
    assert len(record) == DEFAULT_RETENTION_MS // DAY_MS


def test_unlimited_retention_keeps_everything() -> None:
    state = TerminalState(DELAY, retention_ms=None)
    add_tx(state, [(d, T0 + d * DAY_MS, 10) for d in range(100)])
    assert state.trim() == 0
    assert len(state.collect().records[0]) == 100 - 7


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(TerminalFeaturesError, match="label delay"):
        TerminalState(-1)
    with pytest.raises(TerminalFeaturesError, match="shorter than"):
        TerminalState(DELAY, FEATURE_SPAN_MS - 1)
