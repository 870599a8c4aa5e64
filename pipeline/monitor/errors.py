"""Monitor exceptions and the reason codes of records it dead-letters."""

from __future__ import annotations

from typing import Final

from pipeline.errors import FraudError

# Reason codes of bad input (they go into dead-letter headers and metric labels).
MALFORMED: Final = "malformed"
INVALID_VALUE: Final = "invalid_value"
UNKNOWN_TRANSACTION: Final = "unknown_transaction"
DUPLICATE: Final = "duplicate"
TOO_OLD: Final = "too_old"
INCONSISTENT: Final = "inconsistent"


class MonitorError(FraudError):
    """Root of the monitor's errors."""


class InvalidRecord(MonitorError):
    """A record the monitor cannot use; it is counted and dead-lettered, never fatal."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
