"""Durable per-card state: a compacted changelog of (card, day) buckets.

Each record holds every transaction (timestamp, amount) one card made on one
UTC day, keyed ``b"<card_id>:<day>"`` and written to the partition the card's
transactions come from. Writing whole day buckets of the cards touched since
the last commit keeps records small (a few entries) while compaction keeps
only the newest bucket per key; days older than the longest card window are
dropped by retention and ignored at restore. In exactly-once mode the records
go out in the same transaction as the decisions and input offsets, so the
restored state always matches the committed offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from pipeline.features import CardStateStore
from pipeline.features.spec import CARD_HISTORY_MS, DAY_MS

I64 = npt.NDArray[np.int64]

_MAGIC = b"CDB1"
_HEADER = struct.Struct("<4sI")
_MAGIC_WORD = int.from_bytes(_MAGIC, "little")


class ChangelogError(ValueError):
    """A changelog record that cannot be read."""


def bucket_key(card_id: int, day: int) -> bytes:
    return f"{card_id}:{day}".encode()


def parse_key(key: bytes) -> tuple[int, int]:
    try:
        card, day = key.split(b":")
        return int(card), int(day)
    except ValueError as exc:
        raise ChangelogError(f"bad changelog key {key[:40]!r}") from exc


def encode_bucket(ts_ms: I64, amount: npt.NDArray[np.float64]) -> bytes:
    return (
        _HEADER.pack(_MAGIC, len(ts_ms))
        + np.asarray(ts_ms, "<i8").tobytes()
        + np.asarray(amount, "<f8").tobytes()
    )


def decode_bucket(value: bytes) -> tuple[I64, npt.NDArray[np.float64]]:
    if len(value) < _HEADER.size:
        raise ChangelogError("changelog record too short")
    magic, count = _HEADER.unpack_from(value)
    if magic != _MAGIC or len(value) != _HEADER.size + 16 * count:
        raise ChangelogError("changelog record corrupt or of an unknown version")
    body = memoryview(value)[_HEADER.size :]
    ts = np.frombuffer(body[: 8 * count], "<i8").astype(np.int64)
    amount = np.frombuffer(body[8 * count :], "<f8").astype(np.float64)
    return ts, amount


class DirtyBuckets:
    """(card, day) buckets changed since the last commit, per source partition."""

    def __init__(self) -> None:
        self._dirty: dict[int, set[int]] = {}

    def mark(self, partition: int, card_id: I64, ts_ms: I64) -> None:
        # One int per bucket: card * 2^20 + day (days since 1970 fit in 20 bits
        # until the year 4840).
        packed = (np.asarray(card_id, np.int64) << 20) | (np.asarray(ts_ms, np.int64) // DAY_MS)
        self._dirty.setdefault(partition, set()).update(np.unique(packed).tolist())

    def drain(self, partition: int) -> list[tuple[int, int]]:
        packed = self._dirty.pop(partition, set())
        return [(value >> 20, value & 0xFFFFF) for value in packed]

    def partitions(self) -> list[int]:
        return list(self._dirty)

    def forget(self, partition: int) -> None:
        self._dirty.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(buckets) for buckets in self._dirty.values())


def bucket_records(
    store: CardStateStore, buckets: Iterable[tuple[int, int]]
) -> list[tuple[bytes, bytes]]:
    """(key, value) of each dirty bucket, from the store's current history."""
    pairs = list(buckets)
    if not pairs:
        return []
    cards = [card for card, _ in pairs]
    days = [day for _, day in pairs]
    values = store.day_buckets(cards, days, _MAGIC_WORD, DAY_MS)
    return [
        (f"{card}:{day}".encode(), value) for (card, day), value in zip(pairs, values, strict=True)
    ]


class StateRestorer:
    """Collects one partition's changelog records and rebuilds its card state."""

    def __init__(self, history_ms: int = CARD_HISTORY_MS) -> None:
        self.history_ms = history_ms
        self._buckets: dict[int, dict[int, tuple[I64, npt.NDArray[np.float64]]]] = {}
        self.records = 0
        self.bad_records = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            self.bad_records += 1
            return
        try:
            card_id, day = parse_key(key)
            days = self._buckets.setdefault(card_id, {})
            if value is None:
                days.pop(day, None)
            else:
                days[day] = decode_bucket(value)
            self.records += 1
        except ChangelogError:
            self.bad_records += 1

    def build(self) -> CardStateStore:
        """A store holding :meth:`histories`."""
        store = CardStateStore()
        ids, ts, amounts = self.histories()
        if ids:
            store.load_histories(ids, ts, amounts)
        return store

    def histories(self) -> tuple[list[int], list[I64], list[npt.NDArray[np.float64]]]:
        """(card ids, timestamps, amounts) as of the last record read; stale days trimmed."""
        ids: list[int] = []
        all_ts: list[I64] = []
        all_amounts: list[npt.NDArray[np.float64]] = []
        for card_id, days in self._buckets.items():
            if not days:
                continue
            ordered = [days[day] for day in sorted(days)]
            ts = np.concatenate([bucket[0] for bucket in ordered])
            amount = np.concatenate([bucket[1] for bucket in ordered])
            order = np.argsort(ts, kind="stable")
            ts, amount = ts[order], amount[order]
            keep = ts > ts[-1] - self.history_ms
            keep[-1] = True
            ids.append(card_id)
            all_ts.append(ts[keep])
            all_amounts.append(amount[keep])
        return ids, all_ts, all_amounts
