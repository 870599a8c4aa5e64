"""Per-window monitoring statistics of one worker, cheap enough for the hot path.

Windows are event-time intervals ``[start, start + length)``. A window is
emitted once the worker's event-time watermark passes its end plus a grace
period. The watermark is the slowest partition's: the smallest, over the
partitions assigned to the worker, of the largest transaction time seen on
each, so a partition consumed ahead of the others does not close windows
early. A worker catching up on a backlog reads one partition's chunk after
another; an assigned partition it has not read from yet therefore holds the
watermark back too, until it has been silent for ``idle_ms`` of processing
time (an empty or stalled partition must not keep every window open). Every
statistic is additive (counts, sums), so a late record that reopens an
emitted window produces a second, partial record for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.jit import kernel
from pipeline.policy import APPROVE, DECLINE, REVIEW

F64 = npt.NDArray[np.float64]


@dataclass
class WindowAccumulator:
    start_ms: int
    length_ms: int
    n_features: int
    bins: int
    count: int = 0
    actions: F64 = field(default_factory=lambda: np.zeros(3))
    histogram: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    feature_sum: F64 = field(default_factory=lambda: np.zeros(0))
    feature_sq: F64 = field(default_factory=lambda: np.zeros(0))
    dead_letters: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0

    def __post_init__(self) -> None:
        # Empty unless given (a window leaving the slab brings its sums along).
        if len(self.histogram) != self.bins:
            self.histogram = np.zeros(self.bins, np.int64)
        if len(self.feature_sum) != self.n_features:
            self.feature_sum = np.zeros(self.n_features)
        if len(self.feature_sq) != self.n_features:
            self.feature_sq = np.zeros(self.n_features)

    def record(
        self,
        *,
        worker_id: str,
        model_name: str,
        model_version: str,
        feature_set_version: str,
        feature_names: list[str],
    ) -> dict[str, Any]:
        count = max(self.count, 1)
        mean, std = window_moments(self.feature_sum, self.feature_sq, self.count)
        return {
            "worker_id": worker_id,
            "model_name": model_name,
            "model_version": model_version,
            "rollout_arm": "champion",
            "window_start": self.start_ms,
            "window_end": self.start_ms + self.length_ms,
            "count": self.count,
            "approved": int(self.actions[APPROVE]),
            "reviewed": int(self.actions[REVIEW]),
            "declined": int(self.actions[DECLINE]),
            "alerts": int(self.actions[REVIEW] + self.actions[DECLINE]),
            "dead_letters": self.dead_letters,
            "score_histogram": self.histogram.tolist(),
            "feature_set_version": feature_set_version,
            "feature_names": feature_names,
            "feature_mean": mean.tolist(),
            "feature_std": std.tolist(),
            "latency_ms_mean": self.latency_sum_ms / count,
            "latency_ms_max": self.latency_max_ms,
        }


def window_moments(sums: F64, squares: F64, count: npt.ArrayLike) -> tuple[F64, F64]:
    """Per feature, the mean and the population standard deviation from a window's
    sums and sums of squares (or a row per window, with a count each); an empty
    window divides by 1."""
    divisor = np.maximum(np.asarray(count), 1)[..., None]
    mean = sums / divisor
    return mean, np.sqrt(np.maximum(squares / divisor - mean * mean, 0.0))


#: The arrays of the open windows' slab (one row per window), as WindowStats names them.
_SLAB = (
    "_counts", "_actions", "_histogram", "_sums", "_squares",
    "_latency_sum", "_latency_max", "_dead",
)  # fmt: skip


class WindowStats:
    """Open windows of one worker, keyed by start time.

    The open windows' sums live in one slab of arrays, a row per window, and a
    batch is added to all of its windows by one compiled pass: a worker reading
    a backlog sees dozens of windows in one batch (its partitions are hours
    apart), where a Python step per window would cost more than the rows.
    A window leaves the slab as a :class:`WindowAccumulator` when it is emitted.
    """

    def __init__(
        self,
        length_ms: int,
        grace_ms: int,
        n_features: int,
        bins: int = 20,
        idle_ms: int = 30_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if length_ms <= 0 or grace_ms < 0 or idle_ms < 0:
            raise ValueError("window length must be positive, grace and idle times not negative")
        if bins < 1 or n_features < 0:
            raise ValueError(f"need at least one score bin ({bins}) and no negative feature count")
        self.length_ms = length_ms
        self.grace_ms = grace_ms
        self.n_features = n_features
        self.bins = bins
        self.idle_ms = idle_ms
        self._clock = clock
        self._partition_marks: dict[int, int] = {}
        self._heard_at: dict[int, float] = {}  # assignment or last record, processing time
        self._open: dict[int, int] = {}  # window start -> row of the slab
        self._free: list[int] = []
        # The slab: one row per open window.
        self._counts = np.zeros(0, np.int64)
        self._actions = np.zeros((0, 3), np.int64)
        self._histogram = np.zeros((0, bins), np.int64)
        self._sums = np.zeros((0, n_features))
        self._squares = np.zeros((0, n_features))
        self._latency_sum = np.zeros(0)
        self._latency_max = np.zeros(0)
        self._dead = np.zeros(0, np.int64)
        self._grow(16)

    def _slab(self) -> tuple[npt.NDArray[Any], ...]:
        return tuple(getattr(self, name) for name in _SLAB)

    def _grow(self, rows: int) -> None:
        """Make the slab ``rows`` long, keeping what the open windows hold."""
        held = len(self._counts)
        for name in _SLAB:
            array = getattr(self, name)
            bigger = np.zeros((rows, *array.shape[1:]), array.dtype)
            bigger[:held] = array
            setattr(self, name, bigger)
        self._free.extend(range(rows - 1, held - 1, -1))

    @property
    def watermark_ms(self) -> int:
        """The smallest mark over the partitions heard from within ``idle_ms``
        (never read: -1); over every partition once all of them are idle."""
        marks = self._partition_marks
        horizon = self._clock() - self.idle_ms / 1000.0
        live = [marks.get(p, -1) for p, heard in self._heard_at.items() if heard >= horizon]
        if live:
            return min(live)
        return min(marks.values()) if marks else -1

    def assign(self, partitions: Iterable[int]) -> None:
        """Newly assigned partitions hold the watermark back until read or idle."""
        now = self._clock()
        for partition in partitions:
            self._heard_at[partition] = now

    def forget(self, partitions: list[int]) -> None:
        """Partitions that moved to another worker no longer hold the watermark back."""
        for partition in partitions:
            self._partition_marks.pop(partition, None)
            self._heard_at.pop(partition, None)

    def add(
        self,
        ts_ms: npt.NDArray[np.int64],
        scores: F64,
        actions: npt.NDArray[np.int8],
        features: npt.NDArray[Any],
        latency_ms: float,
        partition: npt.NDArray[np.int64] | None = None,
    ) -> None:
        if len(ts_ms) == 0:
            return
        parts = np.zeros(len(ts_ms), np.int64) if partition is None else partition
        now = self._clock()
        marks = self._partition_marks
        seen, newest_ts = partition_maxima(parts, ts_ms)
        for part, newest in zip(seen.tolist(), newest_ts.tolist(), strict=True):
            if newest > marks.get(part, -1):
                marks[part] = newest
            self._heard_at[part] = now
        starts, which = _windows_of(np.ascontiguousarray(ts_ms, np.int64), self.length_ms)
        slab_rows = np.fromiter(map(self._row, starts.tolist()), np.int64, len(starts))
        _accumulate(
            slab_rows[which],
            np.ascontiguousarray(scores, np.float64),
            np.ascontiguousarray(actions, np.int8),
            np.ascontiguousarray(features),
            float(latency_ms),
            self._counts, self._actions, self._histogram, self._sums, self._squares,
            self._latency_sum, self._latency_max,
        )  # fmt: skip

    def dead_letter(self, count: int = 1) -> None:
        """Bad records count in the newest open window (they have no event time)."""
        newest = max(self._partition_marks.values(), default=0)
        start = (newest // self.length_ms) * self.length_ms
        self._dead[self._row(start)] += count

    def due(self) -> list[WindowAccumulator]:
        """Windows whose end plus grace the watermark has passed, oldest first."""
        if not self._open:
            return []
        # Once per call, not per window: a backlog can hold hundreds open.
        last_start = self.watermark_ms - self.length_ms - self.grace_ms
        return self._take(sorted(start for start in self._open if start <= last_start))

    def drain(self) -> list[WindowAccumulator]:
        """Every open window (at shutdown)."""
        return self._take(sorted(self._open))

    def _row(self, start: int) -> int:
        """The slab row of the window starting at ``start`` (opened empty if new)."""
        row = self._open.get(start)
        if row is None:
            if not self._free:
                self._grow(2 * len(self._counts))
            row = self._open[start] = self._free.pop()
        return row

    def _take(self, starts: list[int]) -> list[WindowAccumulator]:
        """Close windows: their sums leave the slab (one gather per array, however
        many windows: a backlog closes dozens at once), whose rows are zeroed for reuse."""
        if not starts:
            return []
        rows = [self._open.pop(start) for start in starts]
        counts, actions, histogram, sums, squares, latency_sum, latency_max, dead = (
            array[rows] for array in self._slab()
        )
        for array in self._slab():
            array[rows] = 0
        self._free.extend(rows)
        windows = []
        for k, (start, count, dead_count, latency, slowest) in enumerate(
            zip(
                starts,
                counts.tolist(),
                dead.tolist(),
                latency_sum.tolist(),
                latency_max.tolist(),
                strict=True,
            )
        ):
            windows.append(
                WindowAccumulator(
                    start,
                    self.length_ms,
                    self.n_features,
                    self.bins,
                    count=count,
                    actions=actions[k],
                    histogram=histogram[k],
                    feature_sum=sums[k],
                    feature_sq=squares[k],
                    dead_letters=dead_count,
                    latency_sum_ms=latency,
                    latency_max_ms=slowest,
                )
            )
        return windows


def partition_maxima(
    partition: npt.NDArray[np.int64], values: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The partitions of a batch (in order of first appearance) and each one's
    largest value: one pass, where a mask and a max per partition cost more than
    the rows of a small batch."""
    return _partition_maxima(
        np.ascontiguousarray(partition, np.int64), np.ascontiguousarray(values, np.int64)
    )


def warm_up() -> None:
    """Compile (or load from numba's cache) the accumulation kernels."""
    stats = WindowStats(3_600_000, 0, 2)
    stats.add(np.array([0, 1], np.int64), np.array([0.1, 0.9]), np.array([0, 2], np.int8),
              np.zeros((2, 2), np.float32), 1.0, np.array([0, 1], np.int64))  # fmt: skip


@kernel
def _place(  # pragma: no cover - compiled
    found: npt.NDArray[np.int64], count: int, last: int, key: int
) -> tuple[int, int]:
    """The index of ``key`` among ``found[:count]`` (``last`` tried first: rows come
    in runs of one key), appending it if new; and the new count."""
    if count and found[last] == key:
        return last, count
    for j in range(count):
        if found[j] == key:
            return j, count
    found[count] = key
    return count, count + 1


@kernel
def _partition_maxima(  # pragma: no cover - compiled
    partition: npt.NDArray[np.int64], values: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    keys = np.empty(len(partition), np.int64)
    best = np.empty(len(partition), np.int64)
    k = last = 0
    for i in range(len(partition)):
        last, grown = _place(keys, k, last, partition[i])
        if grown > k or values[i] > best[last]:
            best[last] = values[i]
        k = grown
    return keys[:k], best[:k]


@kernel
def _windows_of(  # pragma: no cover - compiled
    ts_ms: npt.NDArray[np.int64], length: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The window starts of a batch (in order of first appearance) and each row's
    index among them: one pass, trying the previous row's window first."""
    n = len(ts_ms)
    starts = np.empty(n, np.int64)
    which = np.empty(n, np.int64)
    k = last = 0
    for i in range(n):
        last, k = _place(starts, k, last, (ts_ms[i] // length) * length)
        which[i] = last
    return starts[:k], which


@kernel
def _accumulate(  # pragma: no cover - compiled
    rows: npt.NDArray[np.int64],
    scores: F64,
    actions: npt.NDArray[np.int8],
    features: npt.NDArray[Any],
    latency_ms: float,
    counts: npt.NDArray[np.int64],
    action_counts: npt.NDArray[np.int64],
    histogram: npt.NDArray[np.int64],
    sums: F64,
    squares: F64,
    latency_sum: F64,
    latency_max: F64,
) -> None:
    """One pass over a batch: into each row's window (``rows``, a slab row), its
    count, action, score bin, latency, and the sums and sums of squares of every
    feature (missing or infinite values count as 0)."""
    bins = histogram.shape[1]
    n_features = features.shape[1]
    for i in range(len(rows)):
        w = rows[i]
        counts[w] += 1
        action_counts[w, actions[i]] += 1
        latency_sum[w] += latency_ms
        if latency_ms > latency_max[w]:
            latency_max[w] = latency_ms
        x = scores[i] * bins
        b = 0
        if x >= bins - 1:
            b = bins - 1
        elif x > 0:
            b = int(x)
        histogram[w, b] += 1
        for j in range(n_features):
            v = np.float64(features[i, j])
            if np.isfinite(v):
                sums[w, j] += v
                squares[w, j] += v * v
