"""Errors of the replay tool."""

from __future__ import annotations

from pipeline.errors import FraudError


class ReplayError(FraudError):
    """A replay cannot start or was asked something impossible (bad options, missing topic)."""
