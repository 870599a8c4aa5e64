"""The monitor's decisions, engine-free: one method per input stream.

The Faust agents decode, call these methods and publish what they return;
everything here is plain Python, tested without a broker. Bad input raises
:class:`InvalidRecord` with the state unchanged, for the caller to count and
dead-letter.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pipeline.monitor import records
from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.detectors import DistributionDriftDetector, DriftSignal, ErrorDriftDetector
from pipeline.monitor.errors import DUPLICATE, TOO_OLD, InvalidRecord
from pipeline.monitor.lineage import TrainingRangeLookup
from pipeline.monitor.metrics import MonitorMetrics
from pipeline.monitor.quality import QualitySnapshot, QualityTracker
from pipeline.monitor.stats_merge import StatsMerger
from pipeline.monitor.trigger import RetrainTrigger, drift_event

Key = tuple[str, str, str]

STATS = "monitor_stats"
OUTCOMES = "outcomes"
DRIFT = "drift_events"


class MonitorEngine:
    """Merges statistics, runs detectors, tracks quality and triggers retraining."""

    def __init__(
        self,
        config: MonitorConfig | None = None,
        metrics: MonitorMetrics | None = None,
        training_ranges: TrainingRangeLookup | None = None,
    ) -> None:
        """``training_ranges`` tells each model version's training data range (see
        :mod:`pipeline.monitor.lineage`); without it no outcome counts as in-sample."""
        self.config = config or MonitorConfig()
        self.metrics = metrics or MonitorMetrics()
        self.training_ranges = training_ranges
        self.merger = StatsMerger(self.config)
        self.trigger = RetrainTrigger(self.config)
        self._distribution: dict[Key, DistributionDriftDetector] = {}
        self._errors: dict[Key, ErrorDriftDetector] = {}
        self._quality: dict[Key, QualityTracker] = {}
        self._quality_due: dict[Key, int] = {}
        self._seen_outcomes: OrderedDict[int, int] = OrderedDict()
        self.outcome_watermark = 0

    # --- monitor-stats -----------------------------------------------------------

    def on_stats(self, record: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """One worker's MonitorStats; returns DriftEvent records to publish."""
        self.metrics.records_in.labels(STATS).inc()
        closed = self.merger.add(records.window_stats(record))
        events: list[dict[str, Any]] = []
        for window in closed:
            labels = window.key
            m = self.metrics
            m.windows_merged.labels(*labels).inc()
            m.window_transactions.labels(*labels).set(window.count)
            m.window_workers.labels(*labels).set(len(window.workers))
            m.window_alert_rate.labels(*labels).set(
                window.alerts / window.count if window.count else 0.0
            )
            m.window_latency_ms.labels(*labels).set(window.latency_ms_mean)
            m.event_time.labels(STATS).set(window.window_end / 1000.0)
            detector = self._distribution.get(window.key)
            if detector is None:
                detector = self._distribution[window.key] = DistributionDriftDetector(
                    self.config, window.key
                )
            signals = detector.update(window)
            for signal, value in detector.last_statistics.items():
                if math.isfinite(value):
                    m.drift_statistic.labels(*labels, signal).set(value)
            events.extend(self._publish(signals, now_ms))
        return events

    # --- outcomes ------------------------------------------------------------------

    def on_outcome(self, record: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """One labelled outcome; returns DriftEvent records to publish."""
        self.metrics.records_in.labels(OUTCOMES).inc()
        outcome = records.outcome(record)
        horizon = self.outcome_watermark - self.config.retention_ms
        if outcome.timestamp < horizon:
            raise InvalidRecord(
                TOO_OLD, f"outcome at {outcome.timestamp} is older than state retention"
            )
        if outcome.transaction_id in self._seen_outcomes:
            raise InvalidRecord(
                DUPLICATE, f"outcome of transaction {outcome.transaction_id} seen before"
            )
        self._seen_outcomes[outcome.transaction_id] = outcome.timestamp
        self.outcome_watermark = max(self.outcome_watermark, outcome.timestamp)
        self._forget_outcomes()
        self.metrics.event_time.labels(OUTCOMES).set(self.outcome_watermark / 1000.0)
        key: Key = (outcome.model_name, outcome.model_version, outcome.rollout_arm)
        self._track_quality(key, outcome)
        if self._in_sample(outcome):
            self.metrics.in_sample_outcomes.labels(*key).inc()
            return []
        detector = self._errors.get(key)
        if detector is None:
            detector = self._errors[key] = ErrorDriftDetector(self.config, key)
        signal = detector.update(outcome)
        return self._publish([signal] if signal else [], now_ms)

    def _in_sample(self, outcome: records.Outcome) -> bool:
        if not self.config.error_skip_in_sample or self.training_ranges is None:
            return False
        trained = self.training_ranges(outcome.model_name, outcome.model_version)
        return trained is not None and trained.contains(outcome.timestamp)

    def _track_quality(self, key: Key, outcome: records.Outcome) -> None:
        tracker = self._quality.get(key)
        if tracker is None:
            tracker = self._quality[key] = QualityTracker(self.config)
        for day in tracker.add(outcome):
            self.metrics.card_precision.labels(*key).set(day.value)
        due = self._quality_due.get(key, outcome.timestamp)
        if outcome.timestamp >= due:
            self.refresh_quality(key)
            self._quality_due[key] = outcome.timestamp + self.config.quality_update_ms

    def refresh_quality(self, key: Key) -> None:
        """Recompute one model version's sliding-window quality gauges."""
        snap = self._quality[key].snapshot()
        m = self.metrics
        m.quality_outcomes.labels(*key).set(snap.outcomes)
        m.quality_precision.labels(*key).set(snap.precision)
        m.quality_recall.labels(*key).set(snap.recall)
        m.quality_average_precision.labels(*key).set(snap.average_precision)
        if key in self._errors:
            m.error_rate.labels(*key).set(self._errors[key].error_rate)

    def quality(self, key: Key) -> QualitySnapshot:
        """The current sliding-window snapshot of one model version."""
        return self._quality[key].snapshot()

    def _forget_outcomes(self) -> None:
        horizon = self.outcome_watermark - self.config.retention_ms
        seen = self._seen_outcomes
        while seen:
            _, ts = next(iter(seen.items()))
            if ts >= horizon:
                break
            seen.popitem(last=False)

    # --- drift-events ----------------------------------------------------------------

    def on_drift_event(self, record: Mapping[str, Any], now_ms: int) -> dict[str, Any] | None:
        """One DriftEvent (ours or another instance's); a RetrainRequest record or None."""
        self.metrics.records_in.labels(DRIFT).inc()
        decision = self.trigger.on_drift(record, now_ms)
        model = str(record["model_name"])
        if decision.request is None:
            self.metrics.retrain_suppressed.labels(model, decision.suppressed or "").inc()
            return None
        self.metrics.retrain_requests.labels(model).inc()
        return decision.request

    # --- shared ------------------------------------------------------------------------

    def reject(self, stream: str, reason: str) -> None:
        """Count one record that was dead-lettered."""
        self.metrics.dead_letters.labels(stream, reason).inc()

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """Close every pending window (end of a replay); DriftEvents it reveals."""
        events: list[dict[str, Any]] = []
        for window in self.merger.flush():
            detector = self._distribution.setdefault(
                window.key, DistributionDriftDetector(self.config, window.key)
            )
            events.extend(self._publish(detector.update(window), now_ms))
        return events

    def _publish(self, signals: list[DriftSignal], now_ms: int) -> list[dict[str, Any]]:
        out = []
        for signal in signals:
            self.metrics.drift_events.labels(
                signal.model_name,
                signal.model_version,
                signal.rollout_arm,
                signal.signal,
                signal.detector,
            ).inc()
            out.append(drift_event(signal, now_ms))
        return out
