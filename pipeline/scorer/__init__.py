"""The streaming scorer: a confluent-kafka batch loop around the engine-free core."""

from pipeline.scorer.config import ScorerConfig
from pipeline.scorer.worker import RunSummary, ScorerWorker

__all__ = ["RunSummary", "ScorerConfig", "ScorerWorker"]
