"""Prometheus metrics, built on a registry object passed in (never the global one)."""

from pipeline.metrics.bulk import BulkHistogram
from pipeline.metrics.scorer import ScorerMetrics
from pipeline.metrics.server import MetricsServer

__all__ = ["BulkHistogram", "MetricsServer", "ScorerMetrics"]
