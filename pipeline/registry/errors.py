"""Errors of the model registry."""

from __future__ import annotations

from pipeline.errors import FraudError


class RegistryError(FraudError):
    """The registry cannot do what was asked (bad state, bad input, I/O failure)."""


class ModelNotFoundError(RegistryError):
    """A reference names no version or alias that exists; the message lists what does."""


class ModelIntegrityError(RegistryError):
    """A stored artifact or its metadata is missing, unreadable or fails its sha256 check."""


class FeatureMismatchError(RegistryError):
    """A model's feature list differs from the one the caller scores with."""
