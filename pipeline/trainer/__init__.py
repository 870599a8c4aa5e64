"""The trainer job: challengers trained on served features and mature labels."""

from pipeline.trainer.compare import Comparison, compare, holdout_metrics
from pipeline.trainer.dataset import (
    AssemblyCounts,
    DecisionCollector,
    DecisionTable,
    LabelCollector,
    LabelTable,
    TrainingSet,
    assemble,
)
from pipeline.trainer.errors import (
    BadRequestError,
    FeatureSetMismatchError,
    NotEnoughDataError,
    TrainerError,
)
from pipeline.trainer.job import RetrainJob, RetrainOutcome
from pipeline.trainer.request import RetrainSpec
from pipeline.trainer.window import DayRange, WindowPolicy, Windows, choose_windows

__all__ = [
    "AssemblyCounts",
    "BadRequestError",
    "Comparison",
    "DayRange",
    "DecisionCollector",
    "DecisionTable",
    "FeatureSetMismatchError",
    "LabelCollector",
    "LabelTable",
    "NotEnoughDataError",
    "RetrainJob",
    "RetrainOutcome",
    "RetrainSpec",
    "TrainerError",
    "TrainingSet",
    "WindowPolicy",
    "Windows",
    "assemble",
    "choose_windows",
    "compare",
    "holdout_metrics",
]
