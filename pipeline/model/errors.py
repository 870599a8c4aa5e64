"""Errors of the model subsystem."""

from __future__ import annotations

from pipeline.errors import FraudError


class ModelError(FraudError):
    """Training or evaluation cannot proceed (empty range, one class only, bad params)."""
