"""Batch scoring, engine-free: features in, scores, actions and reasons out.

The streaming scorer, replay backtests and the training code all call this
module, so what is served is what was evaluated.
"""

from pipeline.scoring.engine import ScoredBatch, ScoringEngine
from pipeline.scoring.model import ServingModel
from pipeline.scoring.reasons import Reason, top_reasons

__all__ = ["Reason", "ScoredBatch", "ScoringEngine", "ServingModel", "top_reasons"]
