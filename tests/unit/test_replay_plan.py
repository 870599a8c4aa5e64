"""Replay logic without a broker: event order, label merge, row selection, pacing, payloads."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.replay import (
    EventKind,
    Pacer,
    PayloadEncoder,
    ReplayColumns,
    ReplayError,
    ReplaySummary,
    card_keys,
    plan_events,
    select_rows,
    wait_until_due,
)
from pipeline.replay.pacing import MAX_STEP_S
from pipeline.serde import Serde

DAY = 86_400_000
SERDE = Serde.local()


def frame(n: int = 6) -> pd.DataFrame:
    stamps = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.arange(n) * 12, unit="h")
    return pd.DataFrame(
        {
            "transaction_id": np.arange(100, 100 + n, dtype=np.int64),
            "timestamp": stamps.to_numpy(dtype="datetime64[ns]"),
            "card_id": np.arange(n, dtype=np.int64) % 3,
            "terminal_id": np.arange(n, dtype=np.int64) + 1000,
            "amount": np.linspace(1.5, 300.25, n),
            "is_fraud": (np.arange(n) % 2).astype(np.int8),
            "fraud_scenario": (np.arange(n) % 2).astype(np.int8),
        }
    )


def test_labels_follow_their_transactions_by_the_delay_interleaved_by_time() -> None:
    times = np.array([0, DAY // 2, DAY, 3 * DAY // 2, 2 * DAY], np.int64)
    plan = plan_events(times, labels=True, label_delay_ms=DAY)
    sequence = list(zip(plan.time_ms.tolist(), plan.kind.tolist(), plan.row.tolist(), strict=True))
    tx, lab = EventKind.TRANSACTION, EventKind.LABEL
    assert sequence == [
        (0, tx, 0),
        (DAY // 2, tx, 1),
        (DAY, tx, 2),
        (DAY, lab, 0),  # at a tie the transaction goes first
        (3 * DAY // 2, tx, 3),
        (3 * DAY // 2, lab, 1),
        (2 * DAY, tx, 4),
        (2 * DAY, lab, 2),
        (5 * DAY // 2, lab, 3),
        (3 * DAY, lab, 4),
    ]
    assert (plan.transactions, plan.labels) == (5, 5)


def test_without_labels_the_plan_is_the_transactions_in_time_order() -> None:
    plan = plan_events(np.array([5, 7, 7, 9]))
    assert plan.row.tolist() == [0, 1, 2, 3]
    assert set(plan.kind.tolist()) == {EventKind.TRANSACTION}
    with pytest.raises(ReplayError, match="delay"):
        plan_events(np.array([1]), labels=True, label_delay_ms=-1)


@given(
    st.lists(st.integers(0, 10 * DAY), max_size=40).map(sorted),
    st.integers(0, 3 * DAY),
)
def test_merged_plan_is_sorted_and_each_label_comes_after_its_transaction(
    times: list[int], delay: int
) -> None:
    plan = plan_events(np.array(times, np.int64), labels=True, label_delay_ms=delay)
    assert np.all(np.diff(plan.time_ms) >= 0)
    position = {
        (kind, row): i for i, (kind, row) in enumerate(zip(plan.kind, plan.row, strict=True))
    }
    for row, stamp in enumerate(times):
        tx_at = position[(EventKind.TRANSACTION, row)]
        label_at = position[(EventKind.LABEL, row)]
        assert tx_at < label_at
        assert plan.time_ms[label_at] == stamp + delay
    tx_rows = plan.row[plan.kind == EventKind.TRANSACTION]
    assert tx_rows.tolist() == list(range(len(times)))  # file order kept


def test_select_rows_by_time_window_and_limit() -> None:
    data = frame(6)  # every 12 hours from 2018-04-01 00:00
    window = select_rows(data, start=datetime(2018, 4, 1, 12), end=datetime(2018, 4, 3))
    assert window["transaction_id"].tolist() == [101, 102, 103]
    assert select_rows(data, limit=2)["transaction_id"].tolist() == [100, 101]
    assert select_rows(data, start=datetime(2018, 4, 2), limit=1)["transaction_id"].tolist() == [
        102
    ]
    with pytest.raises(ReplayError, match="not after"):
        select_rows(data, start=datetime(2018, 4, 2), end=datetime(2018, 4, 1))


def test_pacer_maps_event_time_to_wall_time() -> None:
    pacer = Pacer(speed=3600, first_event_ms=1_000_000, start_wall_s=50.0)
    hour = 3_600_000
    assert pacer.due_at(1_000_000) == 50.0
    assert pacer.due_at(1_000_000 + hour) == pytest.approx(51.0)  # one simulated hour per second
    times = np.array([1_000_000, 1_000_000 + hour // 2, 1_000_000 + hour, 1_000_000 + 2 * hour])
    assert pacer.due_count(times, 50.0) == 1
    assert pacer.due_count(times, 50.5) == 2
    assert pacer.due_count(times, 51.2) == 3
    assert pacer.wait_step(times[3], 50.0) == MAX_STEP_S  # long waits are cut into steps
    assert pacer.wait_step(times[3], 51.99) == pytest.approx(0.01)
    assert pacer.wait_step(times[0], 60.0) == 0.0
    with pytest.raises(ReplayError, match="speed"):
        Pacer(speed=0, first_event_ms=0, start_wall_s=0.0)


def test_wait_until_due_sleeps_in_small_steps_until_the_event_is_due() -> None:
    now = [10.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = Pacer(speed=10, first_event_ms=0, start_wall_s=10.0)
    wait_until_due(pacer, 2_000, lambda: now[0], sleep)  # due 0.2 s after start
    assert now[0] == pytest.approx(10.2)
    assert all(step <= MAX_STEP_S for step in sleeps) and len(sleeps) == 4


def test_keys_are_card_ids_in_decimal() -> None:
    assert card_keys(np.array([0, 42, 4999])) == [b"0", b"42", b"4999"]


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_payloads_decode_to_the_frame_rows(fmt: str) -> None:
    data = frame(4)
    columns = ReplayColumns.from_frame(data)
    encoder = PayloadEncoder(SERDE, "json" if fmt == "json" else "avro", label_source="simulator")
    rows = np.array([2, 0, 3])
    transactions = [SERDE.transactions().decode(p) for p in encoder.transactions(columns, rows)]
    assert [t["transaction_id"] for t in transactions] == [102, 100, 103]
    assert transactions[0]["timestamp"] == columns.timestamp_ms[2]
    assert transactions[0]["amount"] == data["amount"][2]
    labels = [SERDE.codec("Label").decode(p) for p in encoder.labels(columns, rows, DAY)]
    assert [(lab["transaction_id"], lab["is_fraud"]) for lab in labels] == [
        (102, False),
        (100, False),
        (103, True),
    ]
    assert labels[2]["label_timestamp"] == columns.timestamp_ms[3] + DAY
    assert [lab["fraud_scenario"] for lab in labels] == [None, None, 1]
    assert labels[0]["source"] == "simulator"
    if fmt == "json":
        assert json.loads(encoder.transactions(columns, rows[:1])[0])["card_id"] == 2


def test_labels_need_an_is_fraud_column() -> None:
    columns = ReplayColumns.from_frame(frame(2).drop(columns=["is_fraud", "fraud_scenario"]))
    with pytest.raises(ReplayError, match="is_fraud"):
        PayloadEncoder(SERDE, "avro").labels(columns, np.array([0]), 0)


def test_summary_reports_rate_and_errors() -> None:
    summary = ReplaySummary(
        transactions=900, labels=100, seconds=2.0, delivery_errors=1, first_error="x"
    )
    assert summary.events == 1000 and summary.events_per_second == 500.0 and not summary.ok
    assert "500 events/s" in summary.describe() and "first: x" in summary.describe()
