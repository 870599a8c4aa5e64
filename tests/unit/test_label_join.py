"""The scorer's label join, batch by batch, against the rules applied one label at a time.

The joiner reads labels in bulk and joins them as columns; its result must be
what joining each label in turn gives: a label takes its decision if the
decision is still pending, and a label newer than every label before it on
its partition first lets go of the decisions a retention older than itself.
No broker is involved: the joiner's consumer is replaced by a queue.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from confluent_kafka import Message

from pipeline.features.spec import DAY_MS
from pipeline.scorer.labels import LabelJoiner
from pipeline.scoring.outcomes import PendingDecisions
from pipeline.serde import Serde
from pipeline.settings import load_settings

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z
RETENTION = 2 * DAY_MS
SERDE = Serde.local()
LABELS = SERDE.codec("Label")


class Queue:
    """Stands in for the labels consumer: hands out what the test queued."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def consume(self, n: int, timeout: float) -> list[Message]:
        out, self.messages = self.messages[:n], self.messages[n:]
        return out

    def close(self) -> None:
        pass

    def incremental_assign(self, partitions: list[Any]) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _joiner(partitions: list[int], clock: Clock | None = None) -> tuple[LabelJoiner, Queue]:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9")
    joiner = LabelJoiner(
        settings,
        SERDE.labels(),
        SERDE.codec("Decision"),
        RETENTION,
        delay_ms=DAY_MS,
        clock=clock or Clock(),
    )
    joiner._consumer.close()
    queue = Queue()
    joiner._consumer = queue  # type: ignore[assignment]
    joiner.assign(dict.fromkeys(partitions, -1))
    return joiner, queue


def _label_message(partition: int, offset: int, transaction_id: int, is_fraud: bool) -> Message:
    """A label of ``transaction_id`` (card 2), known a day after T0."""
    label = {
        "transaction_id": transaction_id,
        "card_id": 2,
        "is_fraud": is_fraud,
        "label_timestamp": T0 + DAY_MS,
        "source": "test",
        "fraud_scenario": None,
    }
    return Message(topic="labels", partition=partition, offset=offset, value=LABELS.encode(label))


def _decisions(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    """Batches of decisions: ids 0..count-1, times spread over ten days."""
    ts = np.sort(T0 + rng.integers(0, 10 * DAY_MS, count))
    return [
        {
            "id": i,
            "card": int(rng.integers(0, 50)),
            "ts": int(ts[i]),
            "score": float(rng.random()),
            "action": int(rng.integers(0, 3)),
        }
        for i in range(count)
    ]


def _add(pending: PendingDecisions, batch: list[dict[str, Any]], version: str) -> None:
    pending.add(
        np.array([d["id"] for d in batch], np.int64),
        np.array([d["card"] for d in batch], np.int64),
        np.array([d["ts"] for d in batch], np.int64),
        np.array([d["score"] for d in batch]),
        np.array([d["action"] for d in batch], np.int8),
        "fraud",
        version,
        batch[-1]["ts"] + 5,
    )


def _reference(
    pending: PendingDecisions, labels: list[tuple[int, bool, int] | None]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    """One label at a time, as the rules say (None: a payload that is not a label)."""
    outcomes: list[tuple[Any, ...]] = []
    refused: list[tuple[int, str]] = []
    mark = -1
    for position, label in enumerate(labels):
        if label is None:
            refused.append((position, "truncated"))
            continue
        transaction_id, is_fraud, label_ms = label
        if label_ms > mark:
            mark = label_ms
            pending.expire(label_ms)
        decision = pending.take(transaction_id)
        if decision is None:
            refused.append((position, "unknown_transaction"))
            continue
        outcomes.append(
            (
                transaction_id,
                decision.card_id,
                decision.timestamp,
                decision.score,
                decision.action,
                decision.model_version,
                is_fraud,
                decision.decided_at,
                label_ms,
            )
        )
    return outcomes, refused


@pytest.mark.parametrize("seed", range(6))
def test_bulk_join_equals_one_label_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    decisions = _decisions(rng, 400)
    joiner, queue = _joiner([3])
    reference = PendingDecisions(RETENTION)
    cuts = np.sort(rng.choice(np.arange(1, 400), 7, replace=False)).tolist()
    for k, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, 400], strict=True)):
        for pending in (joiner.pending[3], reference):
            _add(pending, decisions[lo:hi], f"v{k % 2}")

    # Labels in label-time order: most decisions, some twice, some unknown, some garbage.
    labels: list[tuple[int, bool, int] | None] = []
    for d in decisions:
        if rng.random() < 0.8:
            labels.append((d["id"], bool(rng.random() < 0.1), d["ts"] + DAY_MS))
    for _ in range(30):
        at = int(rng.integers(0, len(labels)))
        kind = rng.integers(0, 3)
        near = labels[at] or (0, False, T0)
        if kind == 0:
            labels.insert(at, (near[0], True, near[2]))  # duplicate
        elif kind == 1:
            labels.insert(at, (10_000 + at, False, near[2]))  # unknown transaction
        else:
            labels.insert(at, None)
    payloads = [
        b"\x00\x00\x00\x00\x05"
        if label is None
        else LABELS.encode(
            {
                "transaction_id": label[0],
                "card_id": 1,
                "is_fraud": label[1],
                "label_timestamp": label[2],
                "source": "test",
                "fraud_scenario": None,
            }
        )
        for label in labels
    ]
    queue.messages = [
        Message(topic="labels", partition=3, offset=i, value=p) for i, p in enumerate(payloads)
    ]
    joiner.watermarks[3] = T0 + 20 * DAY_MS  # every label's time has come

    produced, rejected = [], []
    while queue.messages or any(joiner._buffers.values()):
        result = joiner.poll(max_records=int(rng.integers(1, 120)))
        rejected += result.rejected
        if result.outcomes is not None:
            o = result.outcomes
            for i in range(len(o)):
                produced.append(
                    (
                        int(o.transaction_id[i]),
                        int(o.card_id[i]),
                        int(o.timestamp[i]),
                        float(o.score[i]),
                        int(o.action[i]),
                        o.models[int(o.model_index[i])][1],
                        bool(o.is_fraud[i]),
                        int(o.decided_at[i]),
                        int(o.label_timestamp[i]),
                    )
                )

    expected, refused = _reference(reference, labels)
    assert produced == expected
    assert [(m.offset(), reason) for m, reason, _ in rejected] == refused
    assert joiner.unknown == sum(reason == "unknown_transaction" for _, reason in refused)
    assert joiner.committable()[0].offset == len(labels)
    assert len(joiner.pending[3]) == len(reference)
    # The stream was built so that decisions do expire between labels.
    assert reference.expired > 0


def test_labels_wait_for_the_slowest_partition() -> None:
    joiner, queue = _joiner([0, 1])
    batch = [{"id": 1, "card": 2, "ts": T0, "score": 0.5, "action": 1}]
    _add(joiner.pending[0], batch, "v1")
    queue.messages = [_label_message(0, 7, 1, True)]
    joiner.watermarks.update({0: T0 + 3 * DAY_MS, 1: T0 + DAY_MS - 1})
    result = joiner.poll()
    assert result.outcomes is None and result.rejected == [] and joiner.committable() == []
    joiner.watermarks[1] = T0 + DAY_MS
    result = joiner.poll()
    assert result.outcomes is not None and result.outcomes.transaction_id.tolist() == [1]
    assert [(tp.partition, tp.offset) for tp in joiner.committable()] == [(0, 8)]


def test_labels_of_a_partition_not_read_yet_wait_for_its_decisions() -> None:
    """Catching up on a backlog, a worker reads partition 0 far ahead before it
    reads partition 1 at all: partition 1's labels must wait for its decisions,
    not be refused as unknown."""
    clock = Clock()
    joiner, queue = _joiner([0, 1], clock)
    queue.messages = [_label_message(1, 0, 1, True)]
    clock.now = 1.0
    joiner.observe(0, T0 + 20 * DAY_MS)
    result = joiner.poll()
    assert result.outcomes is None and result.rejected == [] and joiner.unknown == 0
    # Partition 1 is read: its decision exists, and the label joins it.
    _add(joiner.pending[1], [{"id": 1, "card": 2, "ts": T0, "score": 0.5, "action": 1}], "v1")
    clock.now = 2.0
    joiner.observe(1, T0 + 2 * DAY_MS)
    result = joiner.poll()
    assert result.outcomes is not None and result.outcomes.transaction_id.tolist() == [1]


def test_an_assigned_partition_never_read_stops_holding_labels_back() -> None:
    clock = Clock()
    joiner, queue = _joiner([0, 1], clock)
    _add(joiner.pending[0], [{"id": 1, "card": 2, "ts": T0, "score": 0.5, "action": 1}], "v1")
    queue.messages = [_label_message(0, 0, 1, False)]
    joiner.observe(0, T0 + 3 * DAY_MS)
    assert joiner.poll().outcomes is None  # partition 1 might still bring older events
    clock.now = 31.0  # silent for longer than the idle limit: it no longer counts
    result = joiner.poll()
    assert result.outcomes is not None and result.outcomes.transaction_id.tolist() == [1]


def test_decisions_wait_for_a_labels_reader_that_is_behind() -> None:
    """The event-time bound on pending decisions applies only once labels stopped."""
    clock = Clock()
    joiner, queue = _joiner([0, 1], clock)
    batch = [{"id": 1, "card": 2, "ts": T0, "score": 0.5, "action": 1}]
    _add(joiner.pending[0], batch, "v1")
    # Transactions race a month ahead while the labels reader is starting.
    clock.now = 1.0
    joiner.observe(0, T0 + 30 * DAY_MS)
    joiner.observe(1, T0 + 30 * DAY_MS)
    assert len(joiner.pending[0]) == 1
    # Its label, read a moment later, still finds the decision.
    queue.messages = [_label_message(0, 0, 1, False)]
    clock.now = 2.0
    result = joiner.poll()
    assert result.outcomes is not None and result.outcomes.transaction_id.tolist() == [1]
    # Labels stopped: nothing read for a while and none waiting, so the bound applies.
    _add(joiner.pending[0], [{**batch[0], "id": 2, "ts": T0 + 30 * DAY_MS}], "v1")
    clock.now = 200.0
    joiner.observe(1, T0 + 70 * DAY_MS)
    joiner.observe(0, T0 + 70 * DAY_MS)
    assert len(joiner.pending[0]) == 0
