"""A Prometheus histogram fed a whole batch of observations at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

_bound_label: Callable[[float], str] = floatToGoString  # "le" as prometheus_client writes it


class BulkHistogram:
    """A histogram whose observations arrive as arrays: one bucket search and
    one lock per array, where ``prometheus_client.Histogram.observe`` costs a
    Python call and a lock per value (about 6 µs: 4,700 latency samples of a
    300k-event backlog took 0.03 s).

    Exposed like a ``Histogram`` without labels: ``<name>_bucket`` (cumulative,
    ``le`` an upper bound, inclusive), ``<name>_count`` and ``<name>_sum``.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = np.asarray(buckets, np.float64)
        if len(bounds) == 0 or np.any(np.diff(bounds) <= 0) or np.isinf(bounds).any():
            raise ValueError("buckets must be finite and strictly increasing")
        self.name = name
        self.documentation = documentation
        self._bounds = bounds
        self._labels = [_bound_label(b) for b in bounds.tolist()] + ["+Inf"]
        self._counts = np.zeros(len(bounds) + 1, np.int64)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many(np.array([value], np.float64))

    def observe_many(self, values: npt.ArrayLike) -> None:
        """Count every value of ``values`` (NaN values are ignored)."""
        array = np.asarray(values, np.float64).ravel()
        array = array[~np.isnan(array)]
        if len(array) == 0:
            return
        counts = np.bincount(
            np.searchsorted(self._bounds, array, side="left"), minlength=len(self._counts)
        )
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(self._labels, cumulative, strict=True)), total)
        yield family
