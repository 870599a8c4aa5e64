"""Errors of the trainer job."""

from __future__ import annotations

from pipeline.errors import FraudError


class TrainerError(FraudError):
    """The retrain job cannot proceed."""


class NotEnoughDataError(TrainerError):
    """The window holds too few mature labelled transactions (or no fraud) to train or judge."""


class FeatureSetMismatchError(TrainerError):
    """No decision in range carries the served features of the current feature set."""


class BadRequestError(TrainerError):
    """A retrain request is malformed (empty id, inverted range, unknown model name)."""
