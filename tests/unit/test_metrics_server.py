from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from pipeline.metrics import MetricsServer, ScorerMetrics


def test_metrics_are_served_from_their_own_registry() -> None:
    metrics = ScorerMetrics(CollectorRegistry())
    metrics.events_in.inc(5)
    metrics.decisions.labels(action="DECLINE").inc()
    metrics.model_info.info({"name": "fraud", "version": "3"})
    server = MetricsServer(metrics.registry, port=0)
    port = server.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.stop()
    assert "fraud_scorer_events_in_total 5.0" in body
    assert 'fraud_scorer_decisions_by_action_total{action="DECLINE"} 1.0' in body
    assert 'version="3"' in body


def test_two_instances_do_not_collide() -> None:
    first, second = ScorerMetrics(), ScorerMetrics()
    first.events_in.inc()
    assert second.events_in._value.get() == 0
