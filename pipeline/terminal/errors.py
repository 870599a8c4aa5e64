"""Errors of the terminal-features subsystem."""

from __future__ import annotations

from pipeline.errors import FraudError


class TerminalFeaturesError(FraudError):
    """The terminal-features job or table cannot do its work (missing topic, bad input)."""
