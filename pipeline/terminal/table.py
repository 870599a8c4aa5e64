"""The global terminal table a scorer reads: the whole compacted topic, kept current.

Every scorer instance reads every partition of the terminal-features topic
from the beginning (assigned, no consumer group, no commits) and applies the
latest record per terminal. :meth:`TerminalTable.poll`, called between scoring
batches, drains what has arrived without blocking; :meth:`primitives` answers
from the current content. Implements the scorer's ``TerminalSource``.
"""

from __future__ import annotations

import logging
import time
import uuid
from types import TracebackType

import numpy as np
import numpy.typing as npt
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message

from pipeline.features.spec import DAY_MS
from pipeline.features.terminal import TerminalPrimitives
from pipeline.kafka import make_consumer
from pipeline.serde import DecodeError, Serde
from pipeline.settings import Settings
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.partitions import all_partitions
from pipeline.terminal.record import RECORD_NAME, HistoryRecord, terminal_from_key
from pipeline.terminal.store import HistoryStore

I64 = npt.NDArray[np.int64]

log = logging.getLogger(__name__)

_DRAIN_BATCH = 10_000


class TerminalTable:
    """Terminal histories from the compacted topic, queryable as terminal primitives."""

    def __init__(
        self,
        settings: Settings,
        *,
        rebuild_interval_s: float = 1.0,
        topic: str | None = None,
        serde: Serde | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.topics.terminal_features
        self.store = HistoryStore(settings.label_delay_days * DAY_MS, rebuild_interval_s)
        self._codec = (serde or Serde.from_settings(settings)).codec(RECORD_NAME)
        self._consumer: Consumer | None = None
        self._at_end: dict[int, bool] = {}
        self.applied = 0
        self.bad_records = 0

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Assign every partition of the topic from its beginning (idempotent)."""
        if self._consumer is not None:
            return
        consumer = make_consumer(
            self.settings,
            f"fraud-terminal-table-{uuid.uuid4().hex[:12]}",
            **{
                "enable.partition.eof": True,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
            },
        )
        try:
            partitions = all_partitions(consumer, [self.topic])
        except TerminalFeaturesError:
            consumer.close()
            raise
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        self._at_end = {tp.partition: False for tp in partitions}
        self._consumer = consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> TerminalTable:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reading -------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        """Whether every partition has been read to its end at least once since the last record."""
        return bool(self._at_end) and all(self._at_end.values())

    @property
    def as_of_ms(self) -> int | None:
        """Latest event time any history was published at (``None`` while empty)."""
        return self.store.as_of_ms

    def __len__(self) -> int:
        return len(self.store)

    def poll(self) -> None:
        """Apply every record already fetched, without waiting (``applied`` counts them)."""
        self.start()
        while self._consume(0.0) >= _DRAIN_BATCH:
            pass

    def wait_until_caught_up(self, timeout_s: float = 30.0) -> bool:
        """Read until every partition reaches its end (or the timeout); builds the index.

        Returns whether the whole topic was read. A scorer calls this before
        its first batch so it never scores against a half-loaded table.
        """
        self.start()
        deadline = time.monotonic() + timeout_s
        while not self.caught_up and time.monotonic() < deadline:
            self._consume(min(0.2, max(deadline - time.monotonic(), 0.0)))
        self.poll()
        self.store.history(force=True)
        if not self.caught_up:
            log.warning("terminal table %s not fully read after %.1f s", self.topic, timeout_s)
        return self.caught_up

    def primitives(self, terminal_id: I64, ts_ms: I64) -> TerminalPrimitives:
        """Terminal primitives for each (terminal, transaction time).

        A terminal with no published history gets zero counts and no fraud age,
        exactly what the offline evaluator gives a terminal without matured
        transactions.
        """
        return self.store.primitives(terminal_id, ts_ms)

    def _consume(self, timeout_s: float) -> int:
        """Consume once; returns how many messages came (records, tombstones, events)."""
        consumer = self._consumer
        assert consumer is not None
        messages = consumer.consume(_DRAIN_BATCH, timeout=timeout_s)
        applied = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end[message.partition() or 0] = True
                    continue
                if error.fatal():
                    raise TerminalFeaturesError(f"terminal table consumer failed: {error.str()}")
                log.warning("terminal table consumer: %s", error.str())
                continue
            self._at_end[message.partition() or 0] = False
            applied += self._apply(message)
        self.applied += applied
        return len(messages)

    def _apply(self, message: Message) -> int:
        value = message.value()
        try:
            if value is None:
                self.store.remove(terminal_from_key(message.key()))
            else:
                self.store.apply(HistoryRecord.from_avro(self._codec.decode(value)))
        except (DecodeError, TerminalFeaturesError) as exc:
            self.bad_records += 1
            log.warning(
                "skipping bad terminal history at %s[%s]@%s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )
            return 0
        return 1
