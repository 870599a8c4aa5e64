"""The scorer's client settings: what each delivery mode asks of librdkafka."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from pipeline.scorer import ScorerConfig

# A port nothing listens on: building a client does not connect.
BOOTSTRAP = {"bootstrap.servers": "127.0.0.1:1"}


def test_exactly_once_producer_is_transactional_with_a_short_retry_backoff() -> None:
    config = ScorerConfig(group_id="g", worker_id="w1", exactly_once=True)
    producer = config.producer_overrides()
    assert producer["transactional.id"] == "g-w1"
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    # The retry after CONCURRENT_TRANSACTIONS must be far below a commit interval.
    assert producer["retry.backoff.ms"] * 1000 < config.effective_commit_interval_s * 1e6
    assert producer["transaction.timeout.ms"] <= 15_000


def test_at_least_once_producer_has_no_transaction() -> None:
    producer = ScorerConfig(group_id="g", worker_id="w1", exactly_once=False).producer_overrides()
    assert "transactional.id" not in producer
    assert "retry.backoff.ms" not in producer


@pytest.mark.parametrize("exactly_once", [True, False])
def test_consumer_reads_committed_and_never_auto_commits(exactly_once: bool) -> None:
    consumer = ScorerConfig(group_id="g", worker_id="w1", exactly_once=exactly_once)
    overrides = consumer.consumer_overrides()
    assert overrides["isolation.level"] == "read_committed"
    assert overrides["enable.auto.commit"] is False
    assert overrides["group.instance.id"] == "w1"


@pytest.mark.parametrize("exactly_once", [True, False])
def test_librdkafka_accepts_every_setting(exactly_once: bool) -> None:
    """A misspelt or misplaced property fails here, not at a worker's start."""
    config = ScorerConfig(group_id="g", worker_id="w1", exactly_once=exactly_once)
    Producer({**BOOTSTRAP, **config.producer_overrides()})  # raises on a bad property
    Consumer({**BOOTSTRAP, **config.consumer_overrides()}).close()
    with pytest.raises(KafkaException, match=r"retry\.backof\.ms"):
        Producer({**BOOTSTRAP, **config.producer_overrides(), "retry.backof.ms": 10})
