"""Producing terminal histories (and tombstones) to the compacted topic."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

from pipeline.serde import RecordCodec
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.record import HistoryRecord, terminal_key

_CHUNK = 2000


class HistoryPublisher:
    """Encodes histories and produces them keyed by terminal; counts what was sent.

    Publishing is idempotent: a history republished unchanged leaves the table
    as it was, so at-least-once delivery is enough.
    """

    def __init__(self, producer: Producer, codec: RecordCodec, topic: str) -> None:
        self.producer = producer
        self.codec = codec
        self.topic = topic
        self.records = 0
        self.tombstones = 0
        self.failed = 0
        self._first_error: KafkaError | None = None

    def publish(self, records: Iterable[HistoryRecord], tombstones: Iterable[int] = ()) -> None:
        """Queue tombstones first, then records (a terminal back since its removal wins)."""
        for terminal in tombstones:
            self._produce(terminal_key(terminal), None)
            self.tombstones += 1
        batch: list[HistoryRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) >= _CHUNK:
                self._publish_chunk(batch)
                batch = []
        if batch:
            self._publish_chunk(batch)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued message; raise if any could not be delivered."""
        remaining = self.producer.flush(timeout_s)
        if remaining:
            raise TerminalFeaturesError(
                f"{remaining} terminal histories not delivered to {self.topic} within {timeout_s:.0f} s"
            )
        if self.failed:
            raise TerminalFeaturesError(
                f"{self.failed} terminal histories failed to reach {self.topic}: {self._first_error}"
            )

    def _publish_chunk(self, batch: list[HistoryRecord]) -> None:
        payloads = self.codec.encode_batch(record.to_avro() for record in batch)
        for record, payload in zip(batch, payloads, strict=True):
            self._produce(terminal_key(record.terminal_id), payload)
        self.records += len(batch)
        self.producer.poll(0)

    def _produce(self, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed += 1
            if self._first_error is None:
                self._first_error = error
