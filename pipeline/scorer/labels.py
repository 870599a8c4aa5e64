"""The scorer's side of online accuracy: join delayed labels to decisions.

Labels are keyed by card like transactions, so partition ``p`` of the labels
topic belongs with partition ``p`` of the transactions topic. A worker reads
the label partitions of the transaction partitions it owns with a second,
manually assigned consumer; their offsets are committed through the scorer's
group (in exactly-once mode inside the same transaction). A label is joined
only once the partition's event time has passed its label time, so the
decision it refers to has been made even when labels are read ahead.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from pipeline.errors import FraudError
from pipeline.kafka import make_consumer
from pipeline.scoring.outcomes import PendingDecisions, outcome_record
from pipeline.serde import RecordCodec
from pipeline.settings import Settings

log = logging.getLogger(__name__)

_MAX_BUFFERED = 200_000
_NO_LABELS_FACTOR = 3


@dataclass
class LabelResult:
    """What one poll produced."""

    outcomes: list[dict[str, Any]]
    rejected: list[tuple[Message, str, str]]  # message, reason, detail


class LabelJoiner:
    """Pending decisions and buffered labels of the partitions this worker owns."""

    def __init__(
        self,
        settings: Settings,
        label_codec: RecordCodec,
        decision_codec: RecordCodec,
        retention_ms: int,
        delay_ms: int,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.labels
        self.label_codec = label_codec
        self.decision_codec = decision_codec
        self.retention_ms = retention_ms
        self.pending: dict[int, PendingDecisions] = {}
        self._label_marks: dict[int, int] = {}
        self.delay_ms = delay_ms
        self.watermarks: dict[int, int] = {}
        self._buffers: dict[int, deque[tuple[Message, dict[str, Any]]]] = {}
        self._next_offsets: dict[int, int] = {}
        self._consumer: Consumer = make_consumer(
            settings,
            f"fraud-labels-reader-{uuid.uuid4().hex[:12]}",
            **{"isolation.level": "read_committed", "enable.partition.eof": False},
        )
        self.unknown = 0

    def close(self) -> None:
        self._consumer.close()

    # --- assignment -------------------------------------------------------------
    def assign(self, partitions: dict[int, int]) -> None:
        """Start reading label partitions at their committed offsets (partition -> offset)."""
        tps = []
        for partition, offset in partitions.items():
            self.pending[partition] = PendingDecisions(self.retention_ms)
            self._buffers[partition] = deque()
            tps.append(
                TopicPartition(self.topic, partition, offset if offset >= 0 else OFFSET_BEGINNING)
            )
        if tps:
            self._consumer.incremental_assign(tps)

    def revoke(self, partitions: list[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions if p in self.pending]
        if tps:
            self._consumer.incremental_unassign(tps)
        for partition in partitions:
            self.pending.pop(partition, None)
            self._buffers.pop(partition, None)
            self.watermarks.pop(partition, None)
            self._label_marks.pop(partition, None)
            self._next_offsets.pop(partition, None)

    def rebuild(self, partition: int, timeout_s: float = 60.0) -> int:
        """Refill a partition's pending decisions from the decisions topic (after a restart)."""
        consumer = make_consumer(
            self.settings,
            f"fraud-decisions-reader-{uuid.uuid4().hex[:12]}",
            **{"isolation.level": "read_committed", "enable.partition.eof": True},
        )
        topic = self.settings.topics.decisions
        loaded = 0
        try:
            # No label ever arrived on this partition: nothing to wait for.
            _, labels_high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), 15
            )
            if labels_high <= 0:
                return 0
            since = int(time.time() * 1000) - self.retention_ms
            start = consumer.offsets_for_times([TopicPartition(topic, partition, since)], 15)[0]
            offset = start.offset if start.offset >= 0 else OFFSET_BEGINNING
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 15)
            if high <= max(low, offset if offset >= 0 else low):
                return 0
            consumer.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + timeout_s
            pending = self.pending.setdefault(partition, PendingDecisions(self.retention_ms))
            done = False
            while not done and time.monotonic() < deadline:
                for message in consumer.consume(5000, 0.5):
                    error = message.error()
                    if error is not None:
                        done = done or error.code() == KafkaError._PARTITION_EOF
                        continue
                    try:
                        record = self.decision_codec.decode(message.value() or b"")
                    except FraudError:
                        continue
                    pending.add_one(record)
                    loaded += 1
        finally:
            consumer.close()
        return loaded

    # --- the join ---------------------------------------------------------------
    def observe(self, partition: int, max_ts_ms: int) -> None:
        """Advance a partition's event time (the largest transaction time decided).

        Decisions normally leave the table when their label is joined or when
        the labels read have moved past their label time (:meth:`poll`); this
        only bounds memory when labels stop coming altogether.
        """
        if max_ts_ms > self.watermarks.get(partition, -1):
            self.watermarks[partition] = max_ts_ms
            pending = self.pending.get(partition)
            if pending is not None:
                # Labels join at the slowest partition's time (:meth:`poll`), so a
                # partition read ahead keeps its decisions until that time comes.
                pending.expire(self._slowest() - (_NO_LABELS_FACTOR - 1) * self.retention_ms)

    def _slowest(self) -> int:
        """Event time of the slowest assigned partition that has one (-1: none yet)."""
        marks = [self.watermarks[p] for p in self._buffers if p in self.watermarks]
        return min(marks) if marks else -1

    def poll(self, max_records: int = 5000) -> LabelResult:
        """Read available labels and join every one whose time has come."""
        rejected: list[tuple[Message, str, str]] = []
        if sum(len(b) for b in self._buffers.values()) < _MAX_BUFFERED:
            for message in self._consumer.consume(max_records, 0):
                if message.error() is not None:
                    continue
                partition = message.partition() or 0
                buffer = self._buffers.get(partition)
                if buffer is None:
                    continue
                try:
                    label = self.label_codec.decode(message.value() or b"")
                except FraudError as exc:
                    rejected.append((message, getattr(exc, "reason", "bad_label"), str(exc)))
                    self._next_offsets[partition] = (message.offset() or 0) + 1
                    continue
                buffer.append((message, label))
        outcomes: list[dict[str, Any]] = []
        # Join up to the slowest partition's event time (as the window statistics
        # do): a partition read ahead of the others would otherwise send its
        # outcomes days before theirs, and the monitor sees errors out of order.
        watermark = self._slowest()
        for partition, buffer in self._buffers.items():
            pending = self.pending[partition]
            while buffer and int(buffer[0][1]["label_timestamp"]) <= watermark:
                message, label = buffer.popleft()
                label_ms = int(label["label_timestamp"])
                if label_ms > self._label_marks.get(partition, -1):
                    self._label_marks[partition] = label_ms
                    # Labels come in label-time order per partition: a decision whose
                    # label time is over a day behind them will not get one any more.
                    pending.expire(label_ms)
                self._next_offsets[partition] = (message.offset() or 0) + 1
                transaction_id = int(label["transaction_id"])
                decision = pending.take(transaction_id)
                if decision is None:
                    self.unknown += 1
                    rejected.append(
                        (
                            message,
                            "unknown_transaction",
                            f"no pending decision for transaction {transaction_id} "
                            "(unknown, already labelled, or older than the retention)",
                        )
                    )
                    continue
                outcomes.append(outcome_record(transaction_id, decision, label))
        return LabelResult(outcomes, rejected)

    def committable(self) -> list[TopicPartition]:
        """Offsets of the label partitions up to the last label handled."""
        return [TopicPartition(self.topic, p, o) for p, o in self._next_offsets.items()]

    def committed(self) -> None:
        self._next_offsets.clear()
