"""Drift detectors on event-time windows: River under the hood, engine-free.

Fast signal (no labels): merged windows of one model version are pooled into
blocks of at least ``block_min_count`` transactions, so every statistic has
about the same noise whatever the traffic per window. The first
``reference_blocks`` blocks form the reference. Each later block yields, per
watched feature and for the score, a standardized mean shift
``(mean - reference mean) / reference std`` (a size of effect, not a test
statistic, so it does not grow with traffic) and the score's population
stability index; each feeds a River Page-Hinkley detector. Shifts are clipped
to ``shift_cap`` so that an alarm needs a shift sustained over two blocks or
more: one outlying block (a heavy-tailed amount) never raises it. Only window-level
values reach River, never single events.

Slow signal (labels): the per-outcome error (alerted != fraud) of one model
version feeds River ADWIN; an alarm is raised only when the error rate rose.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from river.drift import ADWIN, PageHinkley

from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.records import F64, I64, Outcome, WindowStats
from pipeline.monitor.stats_merge import pool_moments

SCORE_MEAN = "score_mean"
SCORE_PSI = "score_psi"
ERROR_RATE = "error_rate"


@dataclass(frozen=True)
class DriftSignal:
    """A detector fired: what drifted, by how much, over which event-time span."""

    model_name: str
    model_version: str
    rollout_arm: str
    detector: str
    signal: str
    statistic: float
    threshold: float | None
    window_start: int
    window_end: int
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """Pooled summary of consecutive windows: count, score histogram, feature moments."""

    window_start: int
    window_end: int
    count: int
    histogram: I64
    feature_mean: F64
    feature_std: F64

    @classmethod
    def pool(cls, windows: list[WindowStats], features: tuple[str, ...]) -> Block:
        """Pool windows, keeping the ``features`` columns (NaN where a window lacks one)."""
        counts = np.array([w.count for w in windows], dtype=np.float64)
        means = np.full((len(windows), len(features)), np.nan)
        stds = np.full((len(windows), len(features)), np.nan)
        for row, window in enumerate(windows):
            index = {name: i for i, name in enumerate(window.feature_names)}
            for col, name in enumerate(features):
                if name in index:
                    means[row, col] = window.feature_mean[index[name]]
                    stds[row, col] = window.feature_std[index[name]]
        mean = np.full(len(features), np.nan)
        std = np.full(len(features), np.nan)
        for col in range(len(features)):
            usable = ~(np.isnan(means[:, col]) | np.isnan(stds[:, col]))
            if usable.any():
                _, m, sd = pool_moments(
                    counts[usable], means[usable, col : col + 1], stds[usable, col : col + 1]
                )
                mean[col], std[col] = m[0], sd[0]
        histograms = [w.score_histogram for w in windows if len(w.score_histogram)]
        lengths = {len(h) for h in histograms}
        histogram = (
            np.sum(histograms, axis=0).astype(np.int64)
            if len(lengths) == 1
            else np.zeros(0, dtype=np.int64)
        )
        return cls(
            window_start=windows[0].window_start,
            window_end=windows[-1].window_end,
            count=int(counts.sum()),
            histogram=histogram,
            feature_mean=mean,
            feature_std=std,
        )


def histogram_moments(histogram: I64) -> tuple[float, float]:
    """Mean and population std of scores from equal-width bins over [0, 1] (bin centres)."""
    total = histogram.sum()
    if total <= 0:
        return float("nan"), float("nan")
    centres = (np.arange(len(histogram)) + 0.5) / len(histogram)
    mean = float((centres * histogram).sum() / total)
    var = float((histogram * (centres - mean) ** 2).sum() / total)
    return mean, var**0.5


def bin_groups(reference: I64, min_share: float) -> list[slice]:
    """Adjacent bins merged so each group holds at least ``min_share`` of the reference.

    Scores crowd near zero; equal-width tail bins would hold a handful of
    transactions each and make the PSI pure noise.
    """
    total = reference.sum()
    groups: list[slice] = []
    start, mass = 0, 0
    for i, count in enumerate(reference):
        mass += int(count)
        if total and mass / total >= min_share:
            groups.append(slice(start, i + 1))
            start, mass = i + 1, 0
    if start < len(reference):
        if groups:
            groups[-1] = slice(groups[-1].start, len(reference))
        else:
            groups.append(slice(0, len(reference)))
    return groups


def population_stability_index(reference: I64, current: I64, groups: list[slice]) -> float:
    """PSI of ``current`` against ``reference`` over bin ``groups`` (half-count smoothing)."""
    ref = np.array([reference[g].sum() for g in groups], dtype=np.float64) + 0.5
    cur = np.array([current[g].sum() for g in groups], dtype=np.float64) + 0.5
    p, q = ref / ref.sum(), cur / cur.sum()
    return float(((q - p) * np.log(q / p)).sum())


class DistributionDriftDetector:
    """Fast-signal detectors of one model version (see the module docstring)."""

    def __init__(self, config: MonitorConfig, key: tuple[str, str, str]) -> None:
        self.config = config
        self.key = key
        self.features = config.watched_features
        self._windows: list[WindowStats] = []
        self._reference_blocks: list[Block] = []
        self._reference: Block | None = None
        self._groups: list[slice] = []
        self._score_ref: tuple[float, float] = (float("nan"), float("nan"))
        self._detectors: dict[str, PageHinkley] = {}
        self.last_statistics: dict[str, float] = {}

    @property
    def ready(self) -> bool:
        """True once the reference is formed and blocks are tested."""
        return self._reference is not None

    def update(self, window: WindowStats) -> list[DriftSignal]:
        """Take one merged window; return the drift it reveals (usually none)."""
        self._windows.append(window)
        if sum(w.count for w in self._windows) < self.config.block_min_count:
            return []
        block = Block.pool(self._windows, self.features)
        self._windows = []
        if self._reference is None:
            self._reference_blocks.append(block)
            if len(self._reference_blocks) < self.config.reference_blocks:
                return []
            self._form_reference()
            for old in self._reference_blocks:  # prime the detectors with in-control values
                list(self._test(old))
            self._reference_blocks = []
            return []
        return list(self._test(block))

    def _form_reference(self) -> None:
        blocks = self._reference_blocks
        counts = np.array([b.count for b in blocks], dtype=np.float64)
        means = np.vstack([b.feature_mean for b in blocks])
        stds = np.vstack([b.feature_std for b in blocks])
        _, mean, std = pool_moments(counts, means, stds)
        lengths = {len(b.histogram) for b in blocks}
        histogram = (
            np.sum([b.histogram for b in blocks], axis=0).astype(np.int64)
            if len(lengths) == 1
            else np.zeros(0, dtype=np.int64)
        )
        self._reference = Block(
            blocks[0].window_start, blocks[-1].window_end, int(counts.sum()), histogram, mean, std
        )
        self._groups = bin_groups(histogram, self.config.psi_min_bin_share)
        self._score_ref = histogram_moments(histogram)
        c = self.config
        for name in self.features:
            self._detectors[f"feature:{name}"] = self._page_hinkley(
                c.shift_delta, c.shift_threshold, "both"
            )
        if len(histogram) and histogram.sum() > 0:
            self._detectors[SCORE_MEAN] = self._page_hinkley(
                c.shift_delta, c.shift_threshold, "both"
            )
            self._detectors[SCORE_PSI] = self._page_hinkley(c.psi_delta, c.psi_threshold, "up")

    @staticmethod
    def _page_hinkley(delta: float, threshold: float, mode: str) -> PageHinkley:
        return PageHinkley(min_instances=1, delta=delta, threshold=threshold, alpha=1.0, mode=mode)

    def statistics(self, block: Block) -> dict[str, float]:
        """The block's drift statistics against the reference (NaN where undefined)."""
        ref = self._reference
        assert ref is not None
        out: dict[str, float] = {}
        for i, name in enumerate(self.features):
            std = ref.feature_std[i]
            out[f"feature:{name}"] = (
                float((block.feature_mean[i] - ref.feature_mean[i]) / std)
                if np.isfinite(std) and std > 0
                else float("nan")
            )
        if SCORE_MEAN in self._detectors and len(block.histogram) == len(ref.histogram):
            mean, _ = histogram_moments(block.histogram)
            ref_mean, ref_std = self._score_ref
            out[SCORE_MEAN] = (mean - ref_mean) / ref_std if ref_std > 0 else float("nan")
            out[SCORE_PSI] = population_stability_index(
                ref.histogram, block.histogram, self._groups
            )
        return out

    def _test(self, block: Block) -> Iterator[DriftSignal]:
        stats = self.statistics(block)
        self.last_statistics = stats
        for signal, value in stats.items():
            if not np.isfinite(value):
                continue
            detector = self._detectors[signal]
            if signal != SCORE_PSI:
                value = float(np.clip(value, -self.config.shift_cap, self.config.shift_cap))
            detector.update(value)  # type: ignore[no-untyped-call]
            if detector.drift_detected:
                yield DriftSignal(
                    model_name=self.key[0],
                    model_version=self.key[1],
                    rollout_arm=self.key[2],
                    detector="page_hinkley",
                    signal=signal,
                    statistic=value,
                    threshold=detector.threshold,
                    window_start=block.window_start,
                    window_end=block.window_end,
                    details={"block_count": str(block.count), "delta": str(detector.delta)},
                )


class ErrorDriftDetector:
    """Slow-signal detector of one model version: ADWIN on the per-outcome error.

    The reported statistic is the error rate of the last ``error_min_outcomes``
    outcomes; an ADWIN change is reported only if that rate is above the rate
    before the change (a falling error rate needs no retraining).
    """

    def __init__(self, config: MonitorConfig, key: tuple[str, str, str]) -> None:
        self.config = config
        self.key = key
        self._adwin = ADWIN(delta=config.error_adwin_delta)  # type: ignore[no-untyped-call]
        self._since = 0
        self._segment_start: int | None = None
        self._segment_end = 0
        self._recent: deque[float] = deque(maxlen=config.error_min_outcomes)

    @property
    def error_rate(self) -> float:
        """Error rate over ADWIN's current window."""
        return float(self._adwin.estimation)

    def update(self, outcome: Outcome) -> DriftSignal | None:
        """Feed one outcome; a signal when the error rate rose significantly."""
        # Outcomes of several partitions interleave out of time order: the
        # window is the span of the segment's timestamps, not first..last.
        if self._segment_start is None or outcome.timestamp < self._segment_start:
            self._segment_start = outcome.timestamp
        self._segment_end = max(self._segment_end, outcome.timestamp)
        error = float(outcome.alerted != outcome.is_fraud)
        before = self._adwin.estimation
        self._adwin.update(error)  # type: ignore[no-untyped-call]
        self._recent.append(error)
        self._since += 1
        if not self._adwin.drift_detected:
            return None
        recent = sum(self._recent) / len(self._recent)
        start, end, since = self._segment_start, self._segment_end, self._since
        self._segment_start, self._segment_end, self._since = None, 0, 0
        if recent <= before or since < self.config.error_min_outcomes:
            return None
        return DriftSignal(
            model_name=self.key[0],
            model_version=self.key[1],
            rollout_arm=self.key[2],
            detector="adwin",
            signal=ERROR_RATE,
            statistic=recent,
            threshold=self.config.error_adwin_delta,
            window_start=start,
            window_end=end,
            details={
                "error_rate_before": f"{before:.6f}",
                "recent_outcomes": str(len(self._recent)),
                "adwin_width": str(int(self._adwin.width)),
            },
        )
