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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from pipeline.kafka import make_consumer
from pipeline.scoring.outcomes import OutcomeBatch, PendingDecisions
from pipeline.serde import LabelCodec, RecordCodec
from pipeline.settings import Settings

log = logging.getLogger(__name__)

_MAX_BUFFERED = 200_000
_NO_LABELS_FACTOR = 3
_LABELS_IDLE_S = 10.0
"""Wall-clock seconds without a label read on a partition before its labels count as stopped."""


I64 = npt.NDArray[np.int64]
Rejected = tuple[Message, str, str]  # message, reason, detail


@dataclass
class LabelResult:
    """What one poll produced."""

    outcomes: OutcomeBatch | None
    rejected: list[Rejected]


@dataclass
class _Chunk:
    """Labels read together for one partition, as columns, joined front to back.

    Rows that failed to decode keep their place (``good`` false, the reason in
    ``bad``), so that they are dead-lettered and their offsets committed in
    order with the labels around them.
    """

    messages: list[Message]
    next_offset: I64
    transaction_id: I64
    is_fraud: npt.NDArray[np.bool_]
    label_ms: I64
    good: npt.NDArray[np.bool_]
    bad: dict[int, tuple[str, str]]
    start: int = 0

    def __len__(self) -> int:
        return len(self.messages)


class LabelJoiner:
    """Pending decisions and buffered labels of the partitions this worker owns."""

    def __init__(
        self,
        settings: Settings,
        label_codec: LabelCodec,
        decision_codec: RecordCodec,
        retention_ms: int,
        delay_ms: int,
        clock: Callable[[], float] = time.monotonic,
        unread_idle_s: float = 30.0,
    ) -> None:
        """``unread_idle_s``: how long an assigned transaction partition not read
        from yet holds the join back (the worker passes the window statistics'
        ``ScorerConfig.stats_idle_ms``, so both wait alike)."""
        self.settings = settings
        self.topic = settings.topics.labels
        self.label_codec = label_codec
        self.decision_codec = decision_codec
        self.retention_ms = retention_ms
        self.pending: dict[int, PendingDecisions] = {}
        self._label_marks: dict[int, int] = {}
        self.delay_ms = delay_ms
        self.watermarks: dict[int, int] = {}
        self._buffers: dict[int, deque[_Chunk]] = {}
        self._buffered = 0
        self._clock = clock
        self._label_read_at: dict[int, float] = {}
        self._assigned_at: dict[int, float] = {}
        self._unread_idle_s = unread_idle_s
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
            self._label_read_at[partition] = self._assigned_at[partition] = self._clock()
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
            chunks = self._buffers.pop(partition, None)
            self._buffered -= sum(len(c) - c.start for c in chunks or ())
            self.watermarks.pop(partition, None)
            self._label_marks.pop(partition, None)
            self._next_offsets.pop(partition, None)
            self._label_read_at.pop(partition, None)
            self._assigned_at.pop(partition, None)

    def rebuild(self, partition: int, timeout_s: float = 60.0) -> int:
        """Refill a partition's pending decisions from the decisions topic (after a restart)."""
        consumer = make_consumer(
            self.settings,
            f"fraud-decisions-reader-{uuid.uuid4().hex[:12]}",
            **{
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,  # the end is signalled this soon (default 500 ms)
            },
        )
        topic = self.settings.topics.decisions
        loaded, newest = 0, -1
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
                values = []
                for message in consumer.consume(5000, 0.05):
                    error = message.error()
                    if error is not None:
                        done = done or error.code() == KafkaError._PARTITION_EOF
                        continue
                    values.append(message.value() or b"")
                # Decisions the scorer wrote itself: one that does not decode is not
                # an input to dead-letter, its label will be reported unknown.
                decoded = self.decision_codec.decode_batch(values)
                if decoded.errors:
                    log.warning(
                        "rebuilding partition %d: %d decisions do not decode (first: %s)",
                        partition,
                        len(decoded.errors),
                        decoded.errors[0].message,
                    )
                pending.add_records(decoded.records)
                loaded += len(decoded.records)
                for record in decoded.records:
                    newest = max(newest, int(record["timestamp"]))
        finally:
            consumer.close()
        if newest >= 0:
            # These decisions were made: the partition's event time is at least theirs,
            # so their labels can join before new transactions arrive.
            self.observe(partition, newest)
        return loaded

    # --- the join ---------------------------------------------------------------
    def observe(self, partition: int, max_ts_ms: int) -> None:
        """Advance a partition's event time (the largest transaction time decided).

        Decisions normally leave the table when their label is joined or when
        the labels read have moved past their label time (:meth:`poll`); this
        only bounds memory when labels stop coming altogether: nothing read
        from the partition's labels for ``_LABELS_IDLE_S`` and none waiting.
        A labels reader that is merely behind (starting, or catching up with a
        backlog the scorer reads faster) keeps the decisions it will join.
        """
        if max_ts_ms > self.watermarks.get(partition, -1):
            self.watermarks[partition] = max_ts_ms
            pending = self.pending.get(partition)
            if pending is not None and self._labels_stopped(partition):
                # Labels join at the slowest partition's time (:meth:`poll`), so a
                # partition read ahead keeps its decisions until that time comes.
                pending.expire(self._slowest() - (_NO_LABELS_FACTOR - 1) * self.retention_ms)

    def _labels_stopped(self, partition: int) -> bool:
        if self._buffers.get(partition):
            return False
        read_at = self._label_read_at.get(partition)
        return read_at is None or self._clock() - read_at > _LABELS_IDLE_S

    def _slowest(self) -> int:
        """Event time of the slowest assigned partition (-1: none yet).

        A worker catching up on a backlog reads one partition's chunk after
        another, so an assigned partition not read from yet holds the join back
        (its labels would otherwise look for decisions not made yet) until it has
        been silent for ``unread_idle_s``; after that only partitions read count.
        """
        now = self._clock()
        marks = []
        for partition in self._buffers:
            mark = self.watermarks.get(partition)
            if mark is not None:
                marks.append(mark)
            elif now - self._assigned_at.get(partition, now) <= self._unread_idle_s:
                return -1
        return min(marks) if marks else -1

    def poll(self, max_records: int = 5000) -> LabelResult:
        """Read available labels and join every one whose time has come."""
        if self._buffered < _MAX_BUFFERED:
            messages = [m for m in self._consumer.consume(max_records, 0) if m.error() is None]
            if messages:
                self._buffer(messages)
        rejected: list[Rejected] = []
        parts: list[OutcomeBatch] = []
        # Join up to the slowest partition's event time (as the window statistics
        # do): a partition read ahead of the others would otherwise send its
        # outcomes days before theirs, and the monitor sees errors out of order.
        watermark = self._slowest()
        for partition, chunks in self._buffers.items():
            pending = self.pending[partition]
            while chunks:
                chunk = chunks[0]
                late = chunk.label_ms[chunk.start :] > watermark
                stop = int(np.argmax(late)) if late.any() else len(late)
                if stop == 0:
                    break
                end = chunk.start + stop
                self._join(partition, pending, chunk, end, parts, rejected)
                self._buffered -= stop
                self._next_offsets[partition] = int(chunk.next_offset[end - 1])
                chunk.start = end
                if end < len(chunk):
                    break
                chunks.popleft()
        outcomes = parts[0] if len(parts) == 1 else OutcomeBatch.concat(parts) if parts else None
        return LabelResult(outcomes, rejected)

    def _buffer(self, messages: list[Message]) -> None:
        """Decode a read of labels at once and queue them per partition."""
        size = len(messages)
        decoded = self.label_codec.decode_columns([m.value() or b"" for m in messages])
        transaction_id = np.zeros(size, np.int64)
        is_fraud = np.zeros(size, np.bool_)
        # A row that failed to decode joins at once, in its place: it waits for nothing.
        label_ms = np.full(size, -1, np.int64)
        good = np.zeros(size, np.bool_)
        at = decoded.indices
        transaction_id[at] = decoded.transaction_id
        is_fraud[at] = decoded.is_fraud
        label_ms[at] = decoded.label_timestamp
        good[at] = True
        partition = np.fromiter(map(Message.partition, messages), np.int64, size)
        next_offset = np.fromiter(map(Message.offset, messages), np.int64, size) + 1
        # Each row's place in its partition's chunk, to file the (few) errors there.
        place = np.empty(size, np.int64)
        bad: dict[int, dict[int, tuple[str, str]]] = {}
        for number in np.unique(partition).tolist():
            rows = np.flatnonzero(partition == number)
            place[rows] = np.arange(len(rows))
            bad[number] = {}
        for error in decoded.errors:
            index = error.index
            bad[int(partition[index])][int(place[index])] = (error.reason, error.message)
        for number, errors in bad.items():
            chunks = self._buffers.get(number)
            if chunks is None:
                continue  # revoked since the read
            self._label_read_at[number] = self._clock()
            rows = np.flatnonzero(partition == number)
            chunks.append(
                _Chunk(
                    [messages[i] for i in rows.tolist()],
                    next_offset[rows],
                    transaction_id[rows],
                    is_fraud[rows],
                    label_ms[rows],
                    good[rows],
                    errors,
                )
            )
            self._buffered += len(rows)

    def _join(
        self,
        partition: int,
        pending: PendingDecisions,
        chunk: _Chunk,
        end: int,
        parts: list[OutcomeBatch],
        rejected: list[Rejected],
    ) -> None:
        """Join rows ``chunk.start:end`` to their decisions, in order."""
        refused: list[tuple[int, str, str]] = [
            (row, *why) for row, why in chunk.bad.items() if chunk.start <= row < end
        ]
        rows = chunk.start + np.flatnonzero(chunk.good[chunk.start : end])
        if len(rows):
            # Labels come in label-time order per partition: a decision whose label
            # time is a retention behind the newest label will not get one any more.
            # Decisions leave in whole batches (expire) as the newest label time
            # passes their threshold, between the takes, exactly as one label at a
            # time would see them.
            mark = self._label_marks.get(partition, -1)
            newest = np.maximum.accumulate(chunk.label_ms[rows])
            newest[newest <= mark] = -1  # only a label newer than any before expires
            first = 0
            while first < len(rows):
                threshold = pending.expiry_threshold()
                last = (
                    len(rows)
                    if threshold is None
                    else int(np.searchsorted(newest, threshold, side="right"))
                )
                if last > first:
                    self._take(pending, chunk, rows[first:last], parts, refused)
                    first = last
                if first < len(rows):
                    pending.expire(int(newest[first]))
            self._label_marks[partition] = max(mark, int(newest[-1]))
        refused.sort(key=lambda item: item[0])
        rejected.extend((chunk.messages[row], reason, detail) for row, reason, detail in refused)

    def _take(
        self,
        pending: PendingDecisions,
        chunk: _Chunk,
        rows: I64,
        parts: list[OutcomeBatch],
        refused: list[tuple[int, str, str]],
    ) -> None:
        ids = chunk.transaction_id[rows]
        taken = pending.take_many(ids)
        if taken.found.any():
            parts.append(OutcomeBatch.join(taken, ids, chunk.is_fraud[rows], chunk.label_ms[rows]))
        for row in rows[~taken.found].tolist():
            self.unknown += 1
            refused.append(
                (
                    row,
                    "unknown_transaction",
                    f"no pending decision for transaction {int(chunk.transaction_id[row])} "
                    "(unknown, already labelled, or older than the retention)",
                )
            )

    def committable(self) -> list[TopicPartition]:
        """Offsets of the label partitions up to the last label handled."""
        return [TopicPartition(self.topic, p, o) for p, o in self._next_offsets.items()]

    def committed(self) -> None:
        self._next_offsets.clear()
