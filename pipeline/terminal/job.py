"""The nearline terminal-features job: transactions + labels in, terminal histories out.

A single instance reads every partition of the transactions and labels topics
(its state needs them all), keeps :class:`~pipeline.terminal.state.TerminalState`
and publishes to the compacted terminal-features topic whenever its event-time
clock crosses a ``publish_every`` boundary. State lives in memory, so by
default it starts from the beginning of its inputs; while it catches up on
that backlog it publishes nothing (the table would otherwise step back to
old histories) and then publishes everything at once.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message
from tqdm import tqdm

from pipeline.features.spec import DAY_MS, HOUR_MS
from pipeline.kafka import make_consumer, make_producer
from pipeline.serde import Serde
from pipeline.settings import Settings
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.partitions import all_partitions, high_watermarks
from pipeline.terminal.publisher import HistoryPublisher
from pipeline.terminal.record import RECORD_NAME
from pipeline.terminal.state import DEFAULT_RETENTION_MS, TerminalState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfig:
    """How the job runs (the settings object says where)."""

    group_id: str = "fraud-terminal-features"
    publish_every_ms: int = HOUR_MS
    from_beginning: bool = True
    retention_ms: int | None = DEFAULT_RETENTION_MS
    batch_size: int = 5000
    trim_every_ms: int = DAY_MS
    idle_publish_s: float = 1.0


@dataclass
class JobSummary:
    """What one run did."""

    transactions: int = 0
    labels: int = 0
    bad_transactions: int = 0
    bad_labels: int = 0
    publications: int = 0
    records: int = 0
    tombstones: int = 0
    terminals: int = 0
    clock_ms: int | None = None
    seconds: float = 0.0
    state: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.transactions + self.labels + self.bad_transactions + self.bad_labels

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "events_per_s": round(self.events_per_s, 1)}


class TerminalFeaturesJob:
    """Consume, update state, publish; bounded runs for tests via ``run`` arguments."""

    def __init__(
        self, settings: Settings, config: JobConfig | None = None, serde: Serde | None = None
    ) -> None:
        self.settings = settings
        self.config = config or JobConfig()
        if self.config.publish_every_ms <= 0:
            raise TerminalFeaturesError("publish interval must be positive")
        serde = serde or Serde.from_settings(settings)
        self._tx_codec = serde.transactions()
        self._label_codec = serde.codec("Label")
        self._history_codec = serde.codec(RECORD_NAME)
        self.state = TerminalState(settings.label_delay_days * DAY_MS, self.config.retention_ms)
        self.summary = JobSummary()
        self._stopped = False
        self._targets: dict[tuple[str, int], int] = {}
        self._caught_up = False
        self._published_slot: int | None = None
        self._trimmed_slot: int | None = None

    def stop(self) -> None:
        """Finish the current batch, publish and return from :meth:`run`."""
        self._stopped = True

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_timeout_s: float | None = None,
        progress: bool = False,
    ) -> JobSummary:
        """Process input until stopped, ``max_events`` consumed or ``idle_timeout_s`` of quiet."""
        topics = self.settings.topics
        consumer = make_consumer(
            self.settings,
            self.config.group_id,
            **{"enable.partition.eof": True, "isolation.level": "read_committed"},
        )
        producer = make_producer(self.settings)
        publisher = HistoryPublisher(producer, self._history_codec, topics.terminal_features)
        started = time.monotonic()
        bar = tqdm(
            desc="terminal-features",
            unit="ev",
            file=sys.stderr,
            disable=not (progress and sys.stderr.isatty()),
            leave=False,
        )
        try:
            all_partitions(consumer, [topics.terminal_features])
            self._assign(consumer, [topics.transactions, topics.labels])
            last_input = last_publish = time.monotonic()
            while not self._stopped:
                messages = consumer.consume(self.config.batch_size, timeout=0.2)
                now = time.monotonic()
                if self._handle(messages, topics.transactions, topics.labels):
                    last_input = now
                    bar.update(len(messages))
                if self._caught_up and self._due(since_publish_s=now - last_publish):
                    self._publish(publisher, consumer)
                    last_publish = now
                if max_events is not None and self.summary.events >= max_events:
                    break
                if idle_timeout_s is not None and now - last_input >= idle_timeout_s:
                    break
            self._publish(publisher, consumer)
            publisher.flush()
        finally:
            bar.close()
            self.summary.seconds = time.monotonic() - started
            self.summary.records = publisher.records
            self.summary.tombstones = publisher.tombstones
            self.summary.terminals = len(self.state)
            self.summary.clock_ms = self.state.clock_ms
            self.summary.state = dict(self.state.counts.__dict__)
            producer.flush(10)
            consumer.close()
        return self.summary

    # --- internals -----------------------------------------------------------

    def _assign(self, consumer: Consumer, topics: list[str]) -> None:
        partitions = all_partitions(consumer, topics)
        if self.config.from_beginning:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
        else:
            committed = consumer.committed(partitions, timeout=15)
            for tp, done in zip(partitions, committed, strict=True):
                tp.offset = done.offset if done.offset >= 0 else OFFSET_BEGINNING
        self._targets = {
            key: end for key, end in high_watermarks(consumer, partitions).items() if end > 0
        }
        consumer.assign(partitions)
        self._caught_up = not self._targets

    def _handle(self, messages: list[Message], tx_topic: str, label_topic: str) -> bool:
        """Apply one consumed batch; returns whether it held any records."""
        tx_values: list[bytes] = []
        label_values: list[bytes] = []
        for message in messages:
            error = message.error()
            topic, partition = message.topic() or "", message.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._reached(topic, partition, message.offset() or 0)
                elif error.fatal():
                    raise TerminalFeaturesError(f"terminal-features consumer failed: {error.str()}")
                else:
                    log.warning("terminal-features consumer: %s", error.str())
                continue
            self._reached(topic, partition, (message.offset() or 0) + 1)
            value = message.value() or b""
            (tx_values if topic == tx_topic else label_values).append(value)
        if tx_values:
            self._transactions(tx_values)
        if label_values:
            self._labels(label_values)
        if self.state.clock_ms is not None:
            slot = self.state.clock_ms // self.config.trim_every_ms
            if self._trimmed_slot is None or slot > self._trimmed_slot:
                self.state.trim()
                self._trimmed_slot = slot
        return bool(tx_values or label_values)

    def _transactions(self, values: list[bytes]) -> None:
        columns = self._tx_codec.decode_columns(values)
        self.summary.bad_transactions += len(columns.errors)
        self.summary.transactions += len(columns)
        self.state.add_transactions(columns.transaction_id, columns.timestamp, columns.terminal_id)

    def _labels(self, values: list[bytes]) -> None:
        decoded = self._label_codec.decode_batch(values)
        self.summary.bad_labels += len(decoded.errors)
        self.summary.labels += len(decoded.records)
        if decoded.records:
            records = decoded.records
            self.state.add_labels(
                np.fromiter((r["transaction_id"] for r in records), np.int64, len(records)),
                np.fromiter((r["is_fraud"] for r in records), bool, len(records)),
                np.fromiter((r["label_timestamp"] for r in records), np.int64, len(records)),
            )

    def _reached(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        target = self._targets.get(key)
        if target is not None and offset >= target:
            del self._targets[key]
            if not self._targets:
                self._caught_up = True
                log.info("terminal-features caught up with its input; publishing")

    def _due(self, since_publish_s: float) -> bool:
        """An event-time publish boundary was crossed, or ``idle_publish_s`` of wall time passed.

        The wall-time rule publishes late labels and the end of a burst without
        waiting for the next event-time boundary; a publication with nothing
        changed sends nothing.
        """
        clock = self.state.clock_ms
        if clock is None:
            return False
        slot = clock // self.config.publish_every_ms
        if self._published_slot is None or slot > self._published_slot:
            return True
        return since_publish_s >= self.config.idle_publish_s

    def _publish(self, publisher: HistoryPublisher, consumer: Consumer) -> None:
        publication = self.state.collect()
        if self.state.clock_ms is not None:
            self._published_slot = self.state.clock_ms // self.config.publish_every_ms
        if not len(publication):
            return
        publisher.publish(publication.records, publication.tombstones)
        self.summary.publications += 1
        try:
            consumer.commit(asynchronous=True)
        except Exception as exc:  # nothing consumed yet, or a transient coordinator error
            log.debug("offset commit skipped: %s", exc)
