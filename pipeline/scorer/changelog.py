"""Durable per-card state: a changelog of the rows the card state took in.

The state of a card is the list of its recent (timestamp, amount) rows, so the
changelog records exactly those rows, with the input offset each came from.
Rows are buffered and go out as packed frames, one Kafka record per input
partition and chunk (not one record per card), written to the partition their
transactions come from. A frame's key names its input offset range, so the
same inputs always give the same key and value: compaction can only drop a
duplicate, and days older than the longest card window are deleted by age.

Restoring a partition replays its frames: rows whose input offset is at or past
the group's committed offset are dropped (those inputs are about to be read
and appended again), rows seen twice (an at-least-once worker that crashed
after writing its changelog but before committing) count once, and each card
keeps the rows of its longest window, exactly as the live store does. In
exactly-once mode the frames go out in the same transaction as the decisions
and input offsets, so the restored state always matches the committed offsets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.features import CardStateStore
from pipeline.features.spec import CARD_HISTORY_MS

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_MAGIC = b"CDF1"
_HEADER = struct.Struct("<4sI")
_ROW_BYTES = 32  # offset, card, timestamp (int64) and amount (float64)


class ChangelogError(ValueError):
    """A changelog record that cannot be read."""


@dataclass(frozen=True)
class Rows:
    """Rows taken in by the card state, in input order, with their input offsets."""

    offset: I64
    card_id: I64
    ts_ms: I64
    amount: F64

    def __len__(self) -> int:
        return len(self.offset)

    def take(self, index: npt.NDArray[np.intp] | slice) -> Rows:
        return Rows(self.offset[index], self.card_id[index], self.ts_ms[index], self.amount[index])

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        if not parts:
            empty = np.zeros(0, np.int64)
            return Rows(empty, empty, empty, np.zeros(0, np.float64))
        if len(parts) == 1:
            return parts[0]
        return Rows(
            np.concatenate([p.offset for p in parts]),
            np.concatenate([p.card_id for p in parts]),
            np.concatenate([p.ts_ms for p in parts]),
            np.concatenate([p.amount for p in parts]),
        )


def frame_key(partition: int, rows: Rows) -> bytes:
    return f"{partition}:{int(rows.offset[0])}-{int(rows.offset[-1])}".encode()


def encode_frame(rows: Rows) -> bytes:
    """Header (magic, row count), then the offset, card, timestamp and amount columns."""
    n = len(rows)
    body = np.empty((4, n), dtype="<i8")
    body[0] = rows.offset
    body[1] = rows.card_id
    body[2] = rows.ts_ms
    body[3] = np.asarray(rows.amount, "<f8").view("<i8")
    return _HEADER.pack(_MAGIC, n) + body.tobytes()


def decode_frame(value: bytes) -> Rows:
    if len(value) < _HEADER.size:
        raise ChangelogError("changelog record too short")
    magic, count = _HEADER.unpack_from(value)
    if magic != _MAGIC or len(value) != _HEADER.size + _ROW_BYTES * count:
        raise ChangelogError("changelog record corrupt or of an unknown version")
    body = np.frombuffer(value, "<i8", offset=_HEADER.size).reshape(4, count)
    return Rows(
        body[0].astype(np.int64),
        body[1].astype(np.int64),
        body[2].astype(np.int64),
        body[3].view("<f8").astype(np.float64),
    )


class ChangelogBuffer:
    """Rows taken in since the last write, any mix of partitions, split when drained."""

    def __init__(self, max_frame_rows: int = 16_384) -> None:
        if max_frame_rows < 1:
            raise ValueError("max_frame_rows must be >= 1")
        self.max_frame_rows = max_frame_rows
        self._partition: list[I64] = []
        self._rows: list[Rows] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, partition: I64, rows: Rows) -> None:
        if len(rows):
            self._partition.append(np.asarray(partition, np.int64))
            self._rows.append(rows)
            self._count += len(rows)

    def drain(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, value) of every frame, rows of a partition in input order."""
        if not self._count:
            return []
        partition = np.concatenate(self._partition)
        rows = Rows.concat(self._rows)
        self._partition, self._rows, self._count = [], [], 0
        order = np.argsort(partition, kind="stable")
        partition, rows = partition[order], rows.take(order)
        cuts = np.flatnonzero(np.diff(partition)) + 1
        frames: list[tuple[int, bytes, bytes]] = []
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(partition)], strict=True):
            number = int(partition[lo])
            for start in range(lo, hi, self.max_frame_rows):
                chunk = rows.take(slice(start, min(start + self.max_frame_rows, hi)))
                frames.append((number, frame_key(number, chunk), encode_frame(chunk)))
        return frames

    def forget(self, partitions: set[int]) -> None:
        """Drop buffered rows of ``partitions`` (revoked or lost: not ours to write)."""
        if not self._count or not partitions:
            return
        kept_partition: list[I64] = []
        kept_rows: list[Rows] = []
        for part, rows in zip(self._partition, self._rows, strict=True):
            keep = ~np.isin(part, list(partitions))
            if keep.all():
                kept_partition.append(part)
                kept_rows.append(rows)
            elif keep.any():
                index = np.flatnonzero(keep)
                kept_partition.append(part[index])
                kept_rows.append(rows.take(index))
        self._partition, self._rows = kept_partition, kept_rows
        self._count = sum(len(rows) for rows in kept_rows)


class StateRestorer:
    """Collects one partition's changelog frames and rebuilds its card state."""

    def __init__(self, history_ms: int = CARD_HISTORY_MS) -> None:
        self.history_ms = history_ms
        self._frames: list[Rows] = []
        self.records = 0
        self.bad_records = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone: nothing to replay
            return
        try:
            self._frames.append(decode_frame(value))
            self.records += 1
        except ChangelogError:
            self.bad_records += 1

    def rows(self, committed_offset: int | None) -> Rows:
        """Rows of inputs before ``committed_offset`` (all if None), once each, in input order."""
        rows = Rows.concat(self._frames)
        if committed_offset is not None:
            rows = rows.take(np.flatnonzero(rows.offset < committed_offset))
        _, first = np.unique(rows.offset, return_index=True)  # sorted by offset
        return rows.take(first)

    def histories(
        self, committed_offset: int | None = None
    ) -> tuple[list[int], list[I64], list[F64]]:
        """(card ids, timestamps, amounts) as the live store holds them after those rows.

        A row older than its card's previous one took that time (the store's
        rule for late rows); each card keeps the rows within ``history_ms`` of
        its latest.
        """
        rows = self.rows(committed_offset)
        if not len(rows):
            return [], [], []
        order = np.argsort(rows.card_id, kind="stable")  # per card, input order
        card, ts, amount = rows.card_id[order], rows.ts_ms[order], rows.amount[order]
        starts = np.r_[0, np.flatnonzero(np.diff(card)) + 1]
        rank = np.zeros(len(card), np.int64)
        rank[starts[1:]] = 1
        rank = np.cumsum(rank)
        t0 = int(ts.min())
        span = int(ts.max()) - t0 + 1
        ts = np.maximum.accumulate(rank * span + (ts - t0)) - rank * span + t0
        last = ts[np.r_[starts[1:] - 1, len(ts) - 1]]
        keep = ts > last[rank] - self.history_ms
        keep[np.r_[starts[1:] - 1, len(ts) - 1]] = True
        card, ts, amount, rank = card[keep], ts[keep], amount[keep], rank[keep]
        cuts = np.flatnonzero(np.diff(rank)) + 1
        ids = card[np.r_[0, cuts]].tolist()
        return ids, np.split(ts, cuts), np.split(amount, cuts)

    def build(self, committed_offset: int | None = None) -> CardStateStore:
        """A store holding :meth:`histories`."""
        store = CardStateStore()
        ids, ts, amounts = self.histories(committed_offset)
        if ids:
            store.load_histories(ids, ts, amounts)
        return store
