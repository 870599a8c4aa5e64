"""Merge per-worker MonitorStats into one summary per model version and window.

Every scorer worker summarises its own partitions; the monitor needs the
whole traffic. Counts and histograms add; means and population standard
deviations pool exactly from (count, mean, std). A window closes when every
live worker of that model version reported it, or when statistics reach
``stats_grace_ms`` past its end (a worker died or lags); closed windows come
out in window order. A worker reporting the same window twice, or a window
already closed, is bad input.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.errors import DUPLICATE, INCONSISTENT, TOO_OLD, InvalidRecord
from pipeline.monitor.records import F64, WindowStats

Key = tuple[str, str, str]


def pool_moments(counts: F64, means: F64, stds: F64) -> tuple[float, F64, F64]:
    """Total count, pooled mean and pooled population std of groups (rows) per column."""
    total = float(counts.sum())
    if total <= 0:
        return 0.0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    weights = counts[:, None] / total
    mean = (weights * means).sum(axis=0)
    var = (weights * (stds**2 + (means - mean) ** 2)).sum(axis=0)
    return total, mean, np.sqrt(np.maximum(var, 0.0))


def merge(a: WindowStats, b: WindowStats) -> WindowStats:
    """The summary of two disjoint slices of the same window (same model version)."""
    if a.feature_names and b.feature_names and a.feature_names != b.feature_names:
        raise InvalidRecord(INCONSISTENT, "workers report different feature lists")
    if len(a.score_histogram) and len(b.score_histogram):
        if len(a.score_histogram) != len(b.score_histogram):
            raise InvalidRecord(INCONSISTENT, "workers report different histogram bins")
        histogram = a.score_histogram + b.score_histogram
    else:
        histogram = a.score_histogram if len(a.score_histogram) else b.score_histogram
    names = a.feature_names or b.feature_names
    if a.feature_names and b.feature_names:
        mean, std = _pool_pair(a, b)
    else:
        mean, std = (
            (a.feature_mean, a.feature_std)
            if a.feature_names
            else (
                b.feature_mean,
                b.feature_std,
            )
        )
    count = a.count + b.count
    latency = (a.latency_ms_mean * a.count + b.latency_ms_mean * b.count) / count if count else 0.0
    return replace(
        a,
        window_start=min(a.window_start, b.window_start),
        window_end=max(a.window_end, b.window_end),
        count=count,
        approved=a.approved + b.approved,
        reviewed=a.reviewed + b.reviewed,
        declined=a.declined + b.declined,
        alerts=a.alerts + b.alerts,
        dead_letters=a.dead_letters + b.dead_letters,
        score_histogram=histogram,
        feature_names=names,
        feature_mean=mean,
        feature_std=std,
        latency_ms_mean=latency,
        latency_ms_max=max(a.latency_ms_max, b.latency_ms_max),
        workers=a.workers | b.workers,
    )


def _pool_pair(a: WindowStats, b: WindowStats) -> tuple[F64, F64]:
    """Pooled moments of two slices; a NaN (unknown) side leaves the other's values."""
    _, mean, std = pool_moments(
        np.array([a.count, b.count], dtype=np.float64),
        np.vstack([a.feature_mean, b.feature_mean]),
        np.vstack([a.feature_std, b.feature_std]),
    )
    a_nan = np.isnan(a.feature_mean) | np.isnan(a.feature_std)
    b_nan = np.isnan(b.feature_mean) | np.isnan(b.feature_std)
    mean = np.where(a_nan, b.feature_mean, np.where(b_nan, a.feature_mean, mean))
    std = np.where(a_nan, b.feature_std, np.where(b_nan, a.feature_std, std))
    return mean, std


class StatsMerger:
    """Collects worker summaries and hands out whole-traffic windows once closed."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self._pending: dict[Key, dict[int, WindowStats]] = defaultdict(dict)
        self._closed_until: dict[Key, int] = {}
        self._watermark: dict[str, int] = {}
        self._last_seen: dict[Key, dict[str, int]] = defaultdict(dict)

    def add(self, stats: WindowStats) -> list[WindowStats]:
        """Take one worker's window; return the windows this closes, oldest first.

        Raises :class:`InvalidRecord` (state unchanged) for a duplicate, a
        window already closed, or a summary inconsistent with its peers.
        """
        key = stats.key
        worker = next(iter(stats.workers))
        if stats.window_start < self._closed_until.get(key, -1):
            raise InvalidRecord(
                TOO_OLD, f"window {stats.window_start} of {key} is already closed (late worker)"
            )
        pending = self._pending[key]
        current = pending.get(stats.window_start)
        if current is not None:
            if worker in current.workers:
                raise InvalidRecord(
                    DUPLICATE, f"worker {worker} reported window {stats.window_start} twice"
                )
            if current.window_end != stats.window_end:
                raise InvalidRecord(INCONSISTENT, "workers disagree on the window's end")
            pending[stats.window_start] = merge(current, stats)
        else:
            pending[stats.window_start] = stats
        seen = self._last_seen[key]
        seen[worker] = max(seen.get(worker, 0), stats.window_end)
        model = stats.model_name
        self._watermark[model] = max(self._watermark.get(model, 0), stats.window_end)
        return self._close(key)

    def flush(self) -> list[WindowStats]:
        """Close every pending window (shutdown, end of a replay)."""
        out: list[WindowStats] = []
        for key in list(self._pending):
            out.extend(self._close(key, force=True))
        return out

    def _close(self, key: Key, force: bool = False) -> list[WindowStats]:
        pending = self._pending[key]
        watermark = self._watermark.get(key[0], 0)
        seen = self._last_seen[key]
        out: list[WindowStats] = []
        for start in sorted(pending):
            window = pending[start]
            live = {
                worker
                for worker, last in seen.items()
                if last >= window.window_end - self.config.worker_ttl_ms
            }
            # The first window of a model version waits for the grace period:
            # until then the monitor cannot know how many workers there are.
            complete = key in self._closed_until and live <= window.workers
            late = watermark >= window.window_end + self.config.stats_grace_ms
            if not (force or complete or late):
                break
            out.append(pending.pop(start))
            self._closed_until[key] = window.window_end
        return out
