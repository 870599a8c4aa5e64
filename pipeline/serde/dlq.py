"""Header names of dead-letter records.

A dead-letter record keeps the original key and value bytes untouched; these
headers (UTF-8 string values) say what went wrong and where it came from.
"""

from __future__ import annotations

from typing import Final

DLQ_ERROR_REASON: Final = "fraud.dlq.reason"
"""Machine-friendly reason code, e.g. ``bad_magic`` or ``invalid_value``."""

DLQ_ERROR_MESSAGE: Final = "fraud.dlq.message"
"""Human-readable detail."""

DLQ_STAGE: Final = "fraud.dlq.stage"
"""Which step failed: ``decode``, ``validate``, ``score``, ..."""

DLQ_SOURCE_TOPIC: Final = "fraud.dlq.source.topic"
DLQ_SOURCE_PARTITION: Final = "fraud.dlq.source.partition"
DLQ_SOURCE_OFFSET: Final = "fraud.dlq.source.offset"
DLQ_SOURCE_TIMESTAMP: Final = "fraud.dlq.source.timestamp"
"""Kafka timestamp of the source record, epoch ms."""

DLQ_FAILED_AT: Final = "fraud.dlq.failed_at"
"""When it failed, epoch ms UTC."""

DLQ_WORKER: Final = "fraud.dlq.worker"
"""Id of the process that dead-lettered the record."""

DLQ_HEADERS: Final = (
    DLQ_ERROR_REASON,
    DLQ_ERROR_MESSAGE,
    DLQ_STAGE,
    DLQ_SOURCE_TOPIC,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_TIMESTAMP,
    DLQ_FAILED_AT,
    DLQ_WORKER,
)


def dlq_headers(
    reason: str,
    message: str,
    *,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at_ms: int,
    worker: str = "",
    source_timestamp_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of one dead-letter record, ready for ``Producer.produce(headers=...)``."""
    headers = [
        (DLQ_ERROR_REASON, reason),
        (DLQ_ERROR_MESSAGE, message[:1000]),
        (DLQ_STAGE, stage),
        (DLQ_SOURCE_TOPIC, topic),
        (DLQ_SOURCE_PARTITION, str(partition)),
        (DLQ_SOURCE_OFFSET, str(offset)),
        (DLQ_FAILED_AT, str(failed_at_ms)),
    ]
    if worker:
        headers.append((DLQ_WORKER, worker))
    if source_timestamp_ms is not None:
        headers.append((DLQ_SOURCE_TIMESTAMP, str(source_timestamp_ms)))
    return [(name, value.encode()) for name, value in headers]
