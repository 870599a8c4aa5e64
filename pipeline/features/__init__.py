"""Features: each defined once (:mod:`.spec`), evaluated offline and online."""

from pipeline.features.errors import FeatureError
from pipeline.features.offline import feature_frame, feature_matrix, timestamps_to_ms
from pipeline.features.online import CardStateStore
from pipeline.features.spec import (
    BASELINE_FEATURE_NAMES,
    DEFAULT_LABEL_DELAY_MS,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FEATURES,
    FeatureSpec,
    describe,
)
from pipeline.features.terminal import (
    TerminalHistory,
    TerminalPrimitives,
    terminal_aggregates_as_of,
)

__all__ = [
    "BASELINE_FEATURE_NAMES",
    "DEFAULT_LABEL_DELAY_MS",
    "FEATURES",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "CardStateStore",
    "FeatureError",
    "FeatureSpec",
    "TerminalHistory",
    "TerminalPrimitives",
    "describe",
    "feature_frame",
    "feature_matrix",
    "terminal_aggregates_as_of",
    "timestamps_to_ms",
]
