"""Serde exceptions.

A record that cannot be decoded is data, not a crash: batch decoders report a
:class:`RecordError` per bad record (index, original bytes, reason) and carry on;
single-record calls raise :class:`DecodeError`, which keeps the original bytes
so the caller can dead-letter them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.errors import FraudError

# Machine-friendly reason codes (they go into dead-letter headers).
BAD_MAGIC: Final = "bad_magic"
UNKNOWN_SCHEMA_ID: Final = "unknown_schema_id"
WRONG_SCHEMA: Final = "wrong_schema"
TRUNCATED: Final = "truncated"
AVRO_DECODE: Final = "avro_decode"
JSON_INVALID: Final = "json_invalid"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
INVALID_VALUE: Final = "invalid_value"


class SerdeError(FraudError):
    """Root of serialization errors, including a broken schema set."""


class SchemaError(SerdeError):
    """The schema set is broken: a missing file, an id table that does not match."""


class EncodeError(SerdeError):
    """A record does not fit its schema."""


class DecodeError(SerdeError):
    """A payload cannot be decoded into a valid record.

    ``payload`` is the original bytes, untouched; ``reason`` is one of the
    reason codes of this module.
    """

    def __init__(self, reason: str, message: str, payload: bytes) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.payload = payload


@dataclass(frozen=True, slots=True)
class RecordError:
    """One bad record of a batch: where it was, its original bytes, and why."""

    index: int
    payload: bytes
    reason: str
    message: str

    def to_exception(self) -> DecodeError:
        """The same failure as a raisable :class:`DecodeError`."""
        return DecodeError(self.reason, self.message, self.payload)
