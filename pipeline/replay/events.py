"""What a replay sends, in which order: transactions and delayed labels merged by time.

Pure functions over columns, no Kafka: the order is tested without a broker.
A label becomes known ``label_delay`` after its transaction (a chargeback, an
analyst's verdict), so labels are interleaved with later transactions, as in
production. At equal times a transaction goes before a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.replay.errors import ReplayError

Int64Array = npt.NDArray[np.int64]
MS_PER_DAY = 86_400_000


class EventKind(IntEnum):
    """What an event carries."""

    TRANSACTION = 0
    LABEL = 1


@dataclass(frozen=True)
class EventPlan:
    """Events in sending order: event time (epoch ms), kind, and the frame row."""

    time_ms: Int64Array
    kind: npt.NDArray[np.int8]
    row: Int64Array

    def __len__(self) -> int:
        return len(self.row)

    @property
    def transactions(self) -> int:
        return int(np.count_nonzero(self.kind == EventKind.TRANSACTION))

    @property
    def labels(self) -> int:
        return int(np.count_nonzero(self.kind == EventKind.LABEL))


def plan_events(
    timestamps_ms: npt.ArrayLike, *, labels: bool = False, label_delay_ms: int = 0
) -> EventPlan:
    """Transactions at their times and, with ``labels``, one label per row at time + delay.

    The merge is a stable sort, so transactions keep their file order and a
    label never goes before its own transaction (even with no delay).
    """
    times = np.asarray(timestamps_ms, dtype=np.int64)
    rows = np.arange(len(times), dtype=np.int64)
    if label_delay_ms < 0:
        raise ReplayError(f"label delay must be >= 0, got {label_delay_ms} ms")
    if not labels:
        order = np.argsort(times, kind="stable")
        return EventPlan(times[order], np.zeros(len(times), np.int8), rows[order])
    all_times = np.concatenate([times, times + np.int64(label_delay_ms)])
    kinds = np.repeat(np.array([EventKind.TRANSACTION, EventKind.LABEL], np.int8), len(times))
    order = np.argsort(all_times, kind="stable")
    return EventPlan(all_times[order], kinds[order], np.concatenate([rows, rows])[order])


def select_rows(
    frame: pd.DataFrame,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Transactions with ``start <= timestamp < end`` (UTC), at most the first ``limit``."""
    if limit is not None and limit < 0:
        raise ReplayError(f"limit must be >= 0, got {limit}")
    if start is not None and end is not None and end <= start:
        raise ReplayError(
            f"end {end:%Y-%m-%d %H:%M:%S} is not after start {start:%Y-%m-%d %H:%M:%S}"
        )
    keep = np.ones(len(frame), np.bool_)
    stamps = frame["timestamp"]
    if start is not None:
        keep &= (stamps >= _naive_utc(start)).to_numpy()
    if end is not None:
        keep &= (stamps < _naive_utc(end)).to_numpy()
    selected = frame[keep] if not keep.all() else frame
    if limit is not None:
        selected = selected.iloc[:limit]
    return selected.reset_index(drop=True)


def _naive_utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp
