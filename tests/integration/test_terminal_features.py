"""The terminal-features job and the global table against a real broker.

Transactions and their labels (at ``timestamp + delay``) are produced to
per-test topics; the job runs in-process until its input is idle; a
:class:`TerminalTable` then reads the compacted topic and must answer the
offline evaluator's terminal primitives for every transaction up to the
job's clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer

from pipeline.data.simulator import SimulatorConfig, simulate
from pipeline.features.offline import timestamps_to_ms
from pipeline.features.spec import DAY_MS
from pipeline.features.terminal import TerminalHistory
from pipeline.serde import Serde
from pipeline.settings import Settings, TopicNames, load_settings
from pipeline.terminal import JobConfig, TerminalFeaturesJob, TerminalTable, backfill

pytestmark = pytest.mark.integration

DELAY = 7 * DAY_MS


@pytest.fixture
def settings(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Settings:
    topics = TopicNames(
        transactions=topic_factory("tx", partitions=3),
        labels=topic_factory("labels", partitions=3),
        terminal_features=topic_factory("terminal-features", config={"cleanup.policy": "compact"}),
    )
    return load_settings(kafka_bootstrap_servers=kafka_bootstrap, topics=topics, label_delay_days=7)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    config = SimulatorConfig(
        n_customers=80, n_terminals=40, n_days=24, seed=4, start_date=dt.date(2018, 4, 1)
    )
    return simulate(config)


def produce(
    settings: Settings, frame: pd.DataFrame, after_ms: int, until_ms: int, *, garbage: bool = False
) -> None:
    """Transactions with ``after < ts <= until`` and the labels that fall due in that span."""
    serde = Serde.from_settings(settings)
    ts = timestamps_to_ms(frame["timestamp"])
    card = frame["card_id"].to_numpy(np.int64)
    tx_rows = (ts > after_ms) & (ts <= until_ms)
    payloads = serde.transactions().encode_columns(
        frame["transaction_id"][tx_rows],
        ts[tx_rows],
        card[tx_rows],
        frame["terminal_id"][tx_rows],
        frame["amount"][tx_rows],
    )
    due = (ts + DELAY > after_ms) & (ts + DELAY <= until_ms)
    labels = serde.codec("Label").encode_batch(
        {
            "transaction_id": int(tx),
            "card_id": int(c),
            "is_fraud": bool(f),
            "label_timestamp": int(t) + DELAY,
        }
        for tx, c, f, t in zip(
            frame["transaction_id"][due], card[due], frame["is_fraud"][due], ts[due], strict=True
        )
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 5})
    for c, payload in zip(card[tx_rows].tolist(), payloads, strict=True):
        producer.produce(settings.topics.transactions, payload, str(c).encode())
    for c, payload in zip(card[due].tolist(), labels, strict=True):
        producer.produce(settings.topics.labels, payload, str(c).encode())
    if garbage:
        producer.produce(settings.topics.transactions, b"\x00\x00\x00\x00\x63garbage", b"1")
    assert producer.flush(30) == 0


def offline_primitives(frame: pd.DataFrame, rows: np.ndarray) -> TerminalHistory:
    ts = timestamps_to_ms(frame["timestamp"])
    terminal = frame["terminal_id"].to_numpy(np.int64)
    history = TerminalHistory(terminal, ts, frame["is_fraud"].to_numpy(np.int64))
    return history.primitives(terminal[rows], ts[rows], DELAY)


def assert_table_matches(table: TerminalTable, frame: pd.DataFrame, rows: np.ndarray) -> None:
    ts = timestamps_to_ms(frame["timestamp"])
    terminal = frame["terminal_id"].to_numpy(np.int64)
    online = table.primitives(terminal[rows], ts[rows])
    expected = offline_primitives(frame, rows)
    for w in expected.count:
        np.testing.assert_array_equal(online.count[w], expected.count[w])
        np.testing.assert_array_equal(online.frauds[w], expected.frauds[w])
    np.testing.assert_array_equal(online.known_fraud_age_ms, expected.known_fraud_age_ms)
    assert expected.count[7 * DAY_MS].sum() > 0


def test_job_publishes_histories_the_table_answers_like_offline(
    settings: Settings, frame: pd.DataFrame
) -> None:
    ts = timestamps_to_ms(frame["timestamp"])
    middle = int(ts.min()) + 16 * DAY_MS
    first = int(np.sum(ts <= middle))
    produce(settings, frame, int(ts.min()) - 1, middle, garbage=True)

    job = TerminalFeaturesJob(settings, JobConfig(group_id="tf-" + settings.topics.labels))
    summary = job.run(idle_timeout_s=2.0)
    assert summary.transactions == first
    assert summary.bad_transactions == 1
    assert summary.labels > 0 and summary.bad_labels == 0
    assert summary.records == summary.terminals > 0
    assert summary.clock_ms == ts[first - 1]

    with TerminalTable(settings) as table:
        assert table.wait_until_caught_up(timeout_s=30)
        assert len(table) == summary.records
        assert table.as_of_ms == summary.clock_ms
        assert_table_matches(table, frame, np.arange(first))

        # More input; a fresh run of the job republishes; the table follows by polling.
        produce(settings, frame, middle, int(ts.max()))
        rerun = TerminalFeaturesJob(settings, JobConfig(group_id="tf2-" + settings.topics.labels))
        summary = rerun.run(idle_timeout_s=2.0)
        assert summary.transactions == len(frame)
        deadline = time.monotonic() + 30
        while not (table.as_of_ms == summary.clock_ms and table.caught_up):
            assert time.monotonic() < deadline, "the table did not follow the topic"
            table.poll()  # never blocks
            time.sleep(0.05)
        table.store.history(force=True)
        assert table.as_of_ms == summary.clock_ms
        assert_table_matches(table, frame, np.arange(len(frame)))


def test_backfill_publishes_a_complete_table(settings: Settings, frame: pd.DataFrame) -> None:
    result = backfill(settings, frame)
    assert result.terminals > 0
    with TerminalTable(settings) as table:
        assert table.wait_until_caught_up(timeout_s=30)
        assert len(table) == result.terminals
        assert_table_matches(table, frame, np.arange(len(frame)))
