"""BulkHistogram exposes what prometheus_client's Histogram exposes for the same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.metrics import BulkHistogram, ScorerMetrics

BUCKETS = (0.001, 0.01, 0.05, 0.1, 1.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([*BUCKETS, 0.0, 0.0005, 0.02, 0.5, 3.0, 1e9]))))
def test_batches_of_values_count_as_one_observe_each(batches: list[list[float]]) -> None:
    reference_registry, bulk_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "doc", buckets=BUCKETS, registry=reference_registry)
    bulk = BulkHistogram("lat_seconds", "doc", BUCKETS, registry=bulk_registry)
    for batch in batches:
        for value in batch:
            reference.observe(value)
        bulk.observe_many(np.array(batch))
    expected, got = _samples(reference_registry), _samples(bulk_registry)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_a_bound_itself_counts_in_its_bucket_and_nan_is_ignored() -> None:
    registry = CollectorRegistry()
    bulk = BulkHistogram("x", "doc", (1.0, 2.0), registry=registry)
    bulk.observe_many([1.0, 2.0, 2.5, float("nan")])
    bulk.observe(0.5)
    text = generate_latest(registry).decode()
    assert 'x_bucket{le="1.0"} 2.0' in text
    assert 'x_bucket{le="2.0"} 3.0' in text
    assert 'x_bucket{le="+Inf"} 4.0' in text
    assert "x_count 4.0" in text and "x_sum 6.0" in text


def test_bad_buckets_and_a_second_registration_are_refused() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        BulkHistogram("x", "doc", (1.0, 1.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        BulkHistogram("x", "doc", ())
    registry = CollectorRegistry()
    BulkHistogram("x", "doc", (1.0,), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        BulkHistogram("x", "doc", (1.0,), registry=registry)


def test_the_scorer_exposes_its_end_to_end_latency_as_a_histogram() -> None:
    metrics = ScorerMetrics()
    metrics.end_to_end_seconds.observe_many([0.004, 0.03, 0.2])
    get = metrics.registry.get_sample_value
    assert get("fraud_scorer_end_to_end_seconds_count") == 3
    assert get("fraud_scorer_end_to_end_seconds_bucket", {"le": "0.035"}) == 2
    assert get("fraud_scorer_end_to_end_seconds_sum") == pytest.approx(0.234)
