"""The project's root exception.

Every error the project raises on purpose derives from :class:`FraudError`, so a
caller (the CLI above all) can tell an expected failure, reported as one line,
from a bug. Subsystems define their own subclasses next to their code.
"""

from __future__ import annotations


class FraudError(Exception):
    """Root of every error raised on purpose by the pipeline."""


class ConfigError(FraudError):
    """Settings are missing, contradictory or malformed."""
