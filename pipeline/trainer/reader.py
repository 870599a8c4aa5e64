"""Read topics whole, once: every partition from its beginning to its end at the start.

A bounded read gives the job a fixed snapshot while scorers keep producing:
records written after the start are left for the next run. Partitions are
assigned (no consumer group, nothing committed) and read ``read_committed``,
so aborted scorer transactions are never trained on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tqdm import tqdm

from pipeline.kafka import make_consumer
from pipeline.settings import Settings
from pipeline.trainer.errors import TrainerError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
_BATCH = 5_000
_METADATA_TIMEOUT_S = 15.0


def read_topics(
    settings: Settings,
    topics: Sequence[str],
    handle: Handler,
    *,
    progress: bool = False,
    stall_timeout_s: float = 60.0,
) -> int:
    """Call ``handle(topic, value)`` for every record up to the end offsets at the start.

    Returns the number of records handed over (tombstones are skipped). Raises
    :class:`TrainerError` for a missing topic, an unreachable cluster, or no
    progress for ``stall_timeout_s`` (e.g. a transaction left open).
    """
    consumer = make_consumer(
        settings,
        f"fraud-retrain-reader-{uuid.uuid4().hex[:12]}",
        **{"enable.partition.eof": True, "isolation.level": "read_committed"},
    )
    try:
        ends = _end_offsets(consumer, topics)
        pending = {key: end for key, end in ends.items() if end[1] > end[0]}
        total = sum(high - low for low, high in pending.values())
        if not pending:
            return 0
        consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for topic, part in pending])
        return _drain(consumer, pending, handle, total, progress, stall_timeout_s)
    finally:
        consumer.close()


def _drain(
    consumer: Consumer,
    pending: dict[tuple[str, int], tuple[int, int]],
    handle: Handler,
    total: int,
    progress: bool,
    stall_timeout_s: float,
) -> int:
    handed = 0
    bar = tqdm(total=total, desc="reading", unit="rec", disable=not progress, leave=False)
    last_progress = time.monotonic()
    with bar:
        while pending:
            messages = consumer.consume(_BATCH, timeout=0.5)
            if not messages and time.monotonic() - last_progress > stall_timeout_s:
                left = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                raise TrainerError(
                    f"no progress reading {left} for {stall_timeout_s:.0f} s "
                    "(an open transaction, or the broker went away)"
                )
            for message in messages:
                topic, part = message.topic() or "", message.partition() or 0
                key = (topic, part)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        _finish(pending, key, bar)
                        continue
                    if error.fatal():
                        raise TrainerError(f"reading {topic} failed: {error.str()}")
                    log.warning("reading %s: %s", topic, error.str())
                    continue
                bounds = pending.get(key)
                offset = message.offset() or 0
                if bounds is None or offset >= bounds[1]:
                    continue  # written after the start: not part of this snapshot
                last_progress = time.monotonic()
                value = message.value()
                if value is not None:
                    handle(topic, value)
                    handed += 1
                bar.update(offset + 1 - bounds[0])
                pending[key] = (offset + 1, bounds[1])
                if offset + 1 >= bounds[1]:
                    _finish(pending, key, None)
    return handed


def _finish(
    pending: dict[tuple[str, int], tuple[int, int]], key: tuple[str, int], bar: tqdm[None] | None
) -> None:
    bounds = pending.pop(key, None)
    if bounds is not None and bar is not None:
        bar.update(bounds[1] - bounds[0])


def _end_offsets(
    consumer: Consumer, topics: Sequence[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) watermarks of every partition of ``topics`` now."""
    ends: dict[tuple[str, int], tuple[int, int]] = {}
    for topic in topics:
        try:
            metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise TrainerError(
                f"Kafka did not answer within {_METADATA_TIMEOUT_S:.0f} s ({exc}); start one "
                "with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise TrainerError(f"topic {topic} does not exist; run `fraud topics create`")
        for part in sorted(info.partitions):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, part), timeout=_METADATA_TIMEOUT_S, cached=False
                )
            except KafkaException as exc:
                raise TrainerError(f"cannot read the end offset of {topic}[{part}]: {exc}") from exc
            ends[(topic, part)] = (int(low), int(high))
    return ends
