"""Batch mode: publish every terminal's history as of the end of a data file.

Run before replaying the file through the scorers: the table then holds every
matured transaction of the file with its final label, and each replayed
transaction's terminal features equal the offline evaluator's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.features.spec import DAY_MS
from pipeline.kafka import make_consumer, make_producer
from pipeline.serde import Serde
from pipeline.settings import Settings
from pipeline.terminal.partitions import all_partitions
from pipeline.terminal.publisher import HistoryPublisher
from pipeline.terminal.record import RECORD_NAME
from pipeline.terminal.snapshot import histories_from_frame


@dataclass(frozen=True)
class BackfillSummary:
    """What a backfill published."""

    terminals: int
    transactions: int
    as_of_ms: int | None


def backfill(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    retention_ms: int | None = None,
    serde: Serde | None = None,
) -> BackfillSummary:
    """Publish the histories of ``frame`` (with ``is_fraud``) as of its last timestamp."""
    topic = settings.topics.terminal_features
    probe = make_consumer(settings, "fraud-terminal-backfill-probe")
    try:
        all_partitions(probe, [topic])
    finally:
        probe.close()
    records = histories_from_frame(
        frame, settings.label_delay_days * DAY_MS, retention_ms=retention_ms
    )
    codec = (serde or Serde.from_settings(settings)).codec(RECORD_NAME)
    publisher = HistoryPublisher(make_producer(settings), codec, topic)
    publisher.publish(records)
    publisher.flush()
    return BackfillSummary(
        terminals=len(records),
        transactions=sum(len(r) for r in records),
        as_of_ms=records[0].as_of_ms if records else None,
    )
