"""The monitor's Prometheus metrics, on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class MonitorMetrics:
    """Every metric the monitor exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        model = ["model", "version", "arm"]
        self.records_in = Counter(
            "fraud_monitor_records_in", "Records consumed, by stream.", ["stream"], registry=r
        )
        self.dead_letters = Counter(
            "fraud_monitor_dead_letters",
            "Records the monitor could not use (dead-lettered), by stream and reason.",
            ["stream", "reason"],
            registry=r,
        )
        self.windows_merged = Counter(
            "fraud_monitor_windows_merged", "Whole-traffic windows closed.", model, registry=r
        )
        self.window_transactions = Gauge(
            "fraud_monitor_window_transactions",
            "Transactions in the latest merged window.",
            model,
            registry=r,
        )
        self.window_workers = Gauge(
            "fraud_monitor_window_workers",
            "Scorer workers that reported the latest merged window.",
            model,
            registry=r,
        )
        self.window_alert_rate = Gauge(
            "fraud_monitor_window_alert_rate",
            "Share of transactions alerted in the latest merged window.",
            model,
            registry=r,
        )
        self.window_latency_ms = Gauge(
            "fraud_monitor_window_latency_ms",
            "Mean decision latency in the latest merged window.",
            model,
            registry=r,
        )
        self.event_time = Gauge(
            "fraud_monitor_event_time_seconds",
            "Event time (transaction time) the monitor has reached, by stream.",
            ["stream"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "fraud_monitor_drift_statistic",
            "Latest drift statistic per signal (standardized shift, PSI or error rate).",
            [*model, "signal"],
            registry=r,
        )
        self.drift_events = Counter(
            "fraud_monitor_drift_events",
            "Drift detected, by signal and detector.",
            [*model, "signal", "detector"],
            registry=r,
        )
        self.retrain_requests = Counter(
            "fraud_monitor_retrain_requests", "Retraining requested.", ["model"], registry=r
        )
        self.retrain_suppressed = Counter(
            "fraud_monitor_retrain_suppressed",
            "Drift that asked for no retraining, by why (duplicate, cooldown).",
            ["model", "why"],
            registry=r,
        )
        self.quality_precision = Gauge(
            "fraud_monitor_precision",
            "Alert precision over the sliding window.",
            model,
            registry=r,
        )
        self.quality_recall = Gauge(
            "fraud_monitor_recall", "Alert recall over the sliding window.", model, registry=r
        )
        self.quality_average_precision = Gauge(
            "fraud_monitor_average_precision",
            "Average precision of scores over the sliding window.",
            model,
            registry=r,
        )
        self.quality_outcomes = Gauge(
            "fraud_monitor_window_outcomes",
            "Labelled outcomes in the sliding window.",
            model,
            registry=r,
        )
        self.card_precision = Gauge(
            "fraud_monitor_card_precision_at_k",
            "Card precision@k of the latest closed day.",
            model,
            registry=r,
        )
        self.in_sample_outcomes = Counter(
            "fraud_monitor_in_sample_outcomes",
            "Outcomes inside the model version's training data range, kept from its error "
            "detector.",
            model,
            registry=r,
        )
        self.error_rate = Gauge(
            "fraud_monitor_error_rate",
            "Error rate (alert != fraud) in the error detector's window.",
            model,
            registry=r,
        )
