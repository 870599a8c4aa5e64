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
        self.histogram = np.zeros(self.bins, np.int64)
        self.feature_sum = np.zeros(self.n_features)
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
        mean = self.feature_sum / count
        std = np.sqrt(np.maximum(self.feature_sq / count - mean * mean, 0.0))
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


class WindowStats:
    """Open windows of one worker, keyed by start time."""

    def __init__(
        self,
        length_ms: int,
        grace_ms: int,
        n_features: int,
        bins: int = 20,
        idle_ms: int = 30_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.length_ms = length_ms
        self.grace_ms = grace_ms
        self.n_features = n_features
        self.bins = bins
        self.idle_ms = idle_ms
        self._clock = clock
        self._partition_marks: dict[int, int] = {}
        self._heard_at: dict[int, float] = {}  # assignment or last record, processing time
        self._open: dict[int, WindowAccumulator] = {}

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
        starts = (ts_ms // self.length_ms) * self.length_ms
        if (starts == starts[0]).all():  # the usual case: one window per batch
            windows, which = starts[:1], np.zeros(len(starts), np.int64)
        else:
            windows, which = np.unique(starts, return_inverse=True)
        k = len(windows)
        counts = np.zeros(k, np.int64)
        action_counts = np.zeros((k, 3), np.int64)
        histogram = np.zeros((k, self.bins), np.int64)
        sums = np.zeros((k, features.shape[1]))
        squares = np.zeros((k, features.shape[1]))
        _accumulate(
            which.astype(np.int64, copy=False),
            np.ascontiguousarray(scores, np.float64),
            np.ascontiguousarray(actions, np.int8),
            np.ascontiguousarray(features),
            counts, action_counts, histogram, sums, squares,
        )  # fmt: skip
        for i, start in enumerate(windows.tolist()):
            window = self._window(start)
            window.count += int(counts[i])
            window.actions += action_counts[i]
            window.histogram += histogram[i]
            window.feature_sum += sums[i]
            window.feature_sq += squares[i]
            window.latency_sum_ms += latency_ms * int(counts[i])
            window.latency_max_ms = max(window.latency_max_ms, latency_ms)

    def dead_letter(self, count: int = 1) -> None:
        """Bad records count in the newest open window (they have no event time)."""
        newest = max(self._partition_marks.values(), default=0)
        start = (newest // self.length_ms) * self.length_ms
        self._window(start).dead_letters += count

    def due(self) -> list[WindowAccumulator]:
        """Windows whose end plus grace the watermark has passed, oldest first."""
        if not self._open:
            return []
        # Once per call, not per window: a backlog can hold hundreds open.
        last_start = self.watermark_ms - self.length_ms - self.grace_ms
        ready = [start for start in self._open if start <= last_start]
        return [self._open.pop(start) for start in sorted(ready)]

    def drain(self) -> list[WindowAccumulator]:
        """Every open window (at shutdown)."""
        windows = [self._open[start] for start in sorted(self._open)]
        self._open.clear()
        return windows

    def _window(self, start: int) -> WindowAccumulator:
        window = self._open.get(start)
        if window is None:
            window = self._open[start] = WindowAccumulator(
                start, self.length_ms, self.n_features, self.bins
            )
        return window


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
def _partition_maxima(  # pragma: no cover - compiled
    partition: npt.NDArray[np.int64], values: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    keys = np.empty(len(partition), np.int64)
    best = np.empty(len(partition), np.int64)
    k = 0
    last = 0  # rows come in runs of one partition: try the previous one first
    for i in range(len(partition)):
        p = partition[i]
        if k == 0 or keys[last] != p:
            last = -1
            for j in range(k):
                if keys[j] == p:
                    last = j
                    break
            if last < 0:
                keys[k] = p
                best[k] = values[i]
                last = k
                k += 1
                continue
        if values[i] > best[last]:
            best[last] = values[i]
    return keys[:k], best[:k]


@kernel
def _accumulate(  # pragma: no cover - compiled
    which: npt.NDArray[np.int64],
    scores: F64,
    actions: npt.NDArray[np.int8],
    features: npt.NDArray[Any],
    counts: npt.NDArray[np.int64],
    action_counts: npt.NDArray[np.int64],
    histogram: npt.NDArray[np.int64],
    sums: F64,
    squares: F64,
) -> None:
    """One pass over a batch: per window (``which``), its count, actions, score
    histogram, and sums and sums of squares of every feature (missing or infinite
    values count as 0)."""
    bins = histogram.shape[1]
    n_features = features.shape[1]
    for i in range(len(which)):
        w = which[i]
        counts[w] += 1
        action_counts[w, actions[i]] += 1
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
