"""Errors of the data subsystem: simulation settings, drift specs, data files."""

from __future__ import annotations

from pipeline.errors import FraudError


class DataError(FraudError):
    """Root of the data subsystem's errors."""


class DriftSpecError(DataError):
    """A ``--drift`` specification does not follow the grammar."""


class SimulationConfigError(DataError):
    """Simulator settings are out of range or contradict each other."""


class DataValidationError(DataError):
    """A transactions file or frame breaks the data-file contract."""


class DataFileError(DataValidationError):
    """The file itself cannot be read or written (missing, unreadable, unknown type)."""
