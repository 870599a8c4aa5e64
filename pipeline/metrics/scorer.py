"""The scorer's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from pipeline.metrics.bulk import BulkHistogram

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


class ScorerMetrics:
    """Every metric one scorer worker exposes, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "fraud_scorer_events_in", "Records consumed from the transactions topic.", registry=r
        )
        self.events_out = Counter("fraud_scorer_decisions_out", "Decisions produced.", registry=r)
        self.decisions = Counter(
            "fraud_scorer_decisions_by_action", "Decisions by action.", ["action"], registry=r
        )
        self.alerts = Counter("fraud_scorer_alerts", "Alerts produced.", registry=r)
        self.dead_letters = Counter(
            "fraud_scorer_dead_letters",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "fraud_scorer_batch_size",
            "Records per processed batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.processing_seconds = Histogram(
            "fraud_scorer_batch_processing_seconds",
            "Wall time to process one batch (decode to produce).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = BulkHistogram(
            "fraud_scorer_end_to_end_seconds",
            "Kafka timestamp of the transaction to its decision being produced "
            "(every latency_sample_every-th decision).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "fraud_scorer_commit_seconds",
            "Wall time of one commit (transaction commit, or flush and offset commit).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Info("fraud_scorer_model", "The model serving traffic.", registry=r)
        self.model_swaps = Counter(
            "fraud_scorer_model_swaps", "Models loaded and switched to.", registry=r
        )
        self.model_refusals = Counter(
            "fraud_scorer_model_refusals", "Model changes refused.", ["reason"], registry=r
        )
        self.consumer_lag = Gauge(
            "fraud_scorer_consumer_lag",
            "Records behind the partition end.",
            ["partition"],
            registry=r,
        )
        self.state_cards = Gauge(
            "fraud_scorer_state_cards", "Cards held in per-card feature state.", registry=r
        )
        self.assigned_partitions = Gauge(
            "fraud_scorer_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.errors = Counter(
            "fraud_scorer_errors", "Errors while processing (not bad input).", ["stage"], registry=r
        )
        self.disowned = Counter(
            "fraud_scorer_disowned_records",
            "Records fetched before their partition was revoked, left to its new owner.",
            registry=r,
        )
