"""The monitor: drift detection, online quality and the retraining trigger.

Engine-free core (:class:`MonitorEngine` and the modules it composes) plus the
faust-streaming adapter built by :func:`create_app` (imported lazily, so the
core never pulls in Faust).
"""

from typing import TYPE_CHECKING, Any

from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.detectors import DistributionDriftDetector, DriftSignal, ErrorDriftDetector
from pipeline.monitor.engine import MonitorEngine
from pipeline.monitor.errors import InvalidRecord, MonitorError
from pipeline.monitor.lineage import RegistryTrainingRanges, TrainingRange
from pipeline.monitor.metrics import MonitorMetrics
from pipeline.monitor.quality import QualityTracker
from pipeline.monitor.stats_merge import StatsMerger
from pipeline.monitor.summarize import summarize_windows
from pipeline.monitor.trigger import RetrainTrigger, drift_event

if TYPE_CHECKING:
    from pipeline.monitor.app import MonitorApp, create_app

__all__ = [
    "DistributionDriftDetector",
    "DriftSignal",
    "ErrorDriftDetector",
    "InvalidRecord",
    "MonitorApp",
    "MonitorConfig",
    "MonitorEngine",
    "MonitorError",
    "MonitorMetrics",
    "QualityTracker",
    "RegistryTrainingRanges",
    "RetrainTrigger",
    "StatsMerger",
    "TrainingRange",
    "create_app",
    "drift_event",
    "summarize_windows",
]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "MonitorApp"):
        from pipeline.monitor import app

        return getattr(app, name)
    raise AttributeError(name)
