"""Summarise scored transactions into MonitorStats records, one per event-time window.

What a scorer worker emits, computed from columns; the monitor's tests and
offline replays (backtests) use it to feed the monitor exactly what live
workers would.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_BINS = 20


def summarize_windows(
    timestamps_ms: npt.ArrayLike,
    scores: npt.ArrayLike,
    features: npt.NDArray[np.floating],
    feature_names: Sequence[str],
    *,
    window_ms: int,
    model_name: str,
    model_version: str,
    worker_id: str,
    alerted: npt.ArrayLike | None = None,
    bins: int = DEFAULT_BINS,
    rollout_arm: str = "champion",
) -> list[dict[str, Any]]:
    """MonitorStats records (dicts) for every non-empty window, in window order.

    Windows are aligned to multiples of ``window_ms`` since the epoch.
    ``alerted`` marks review/decline decisions (default: none).
    """
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    x = np.asarray(features, dtype=np.float64)
    flagged = np.zeros(len(ts), bool) if alerted is None else np.asarray(alerted, dtype=bool)
    window = ts // window_ms
    order = np.argsort(window, kind="stable")
    starts, first = np.unique(window[order], return_index=True)
    bounds = [*first.tolist(), len(order)]
    out: list[dict[str, Any]] = []
    for i, start in enumerate(starts.tolist()):
        rows = order[bounds[i] : bounds[i + 1]]
        histogram, _ = np.histogram(s[rows], bins=bins, range=(0.0, 1.0))
        n_alerts = int(flagged[rows].sum())
        out.append(
            {
                "worker_id": worker_id,
                "model_name": model_name,
                "model_version": model_version,
                "rollout_arm": rollout_arm,
                "window_start": int(start * window_ms),
                "window_end": int((start + 1) * window_ms),
                "count": len(rows),
                "approved": len(rows) - n_alerts,
                "reviewed": n_alerts,
                "declined": 0,
                "alerts": n_alerts,
                "dead_letters": 0,
                "score_histogram": histogram.astype(np.int64).tolist(),
                "feature_set_version": "",
                "feature_names": list(feature_names),
                "feature_mean": _nan_stat(np.nanmean, x[rows]),
                "feature_std": _nan_stat(np.nanstd, x[rows]),
                "latency_ms_mean": 0.0,
                "latency_ms_max": 0.0,
            }
        )
    return out


def _nan_stat(stat: Any, x: npt.NDArray[np.float64]) -> list[float]:
    """Column statistic ignoring missing values; NaN for an all-missing column."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [float(v) for v in stat(x, axis=0)]
