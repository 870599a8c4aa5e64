"""Errors of the feature subsystem."""

from __future__ import annotations

from pipeline.errors import FraudError


class FeatureError(FraudError):
    """Input cannot be turned into features (missing columns, bad order, bad state)."""
