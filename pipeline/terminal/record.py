"""The published unit: one terminal's matured history, as a TerminalHistory record.

Timestamps and flags travel as packed little-endian bytes rather than Avro
arrays: fastavro encodes and decodes a 60-entry ``array<long>`` some 15 times
slower than the same values as ``bytes``, and the job publishes about one
record per transaction it matures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.terminal.errors import TerminalFeaturesError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

RECORD_NAME: Final = "TerminalHistory"
_LE_INT64: Final = np.dtype("<i8")


@dataclass(frozen=True)
class HistoryRecord:
    """Matured transactions of one terminal: ``ts_ms`` ascending, ``is_fraud`` 0/1 alongside.

    The history is complete for timestamps ``<= as_of_ms - label_delay_ms``
    (within the job's retention); later transactions are not in it yet.
    """

    terminal_id: int
    as_of_ms: int
    label_delay_ms: int
    ts_ms: I64
    is_fraud: U8

    def __post_init__(self) -> None:
        if len(self.ts_ms) != len(self.is_fraud):
            raise TerminalFeaturesError(
                f"terminal {self.terminal_id}: {len(self.ts_ms)} timestamps "
                f"but {len(self.is_fraud)} fraud flags"
            )

    def __len__(self) -> int:
        return len(self.ts_ms)

    def to_avro(self) -> dict[str, Any]:
        """The record as the TerminalHistory codec expects it."""
        return {
            "terminal_id": self.terminal_id,
            "as_of": self.as_of_ms,
            "label_delay_ms": self.label_delay_ms,
            "timestamps": np.ascontiguousarray(self.ts_ms, dtype=_LE_INT64).tobytes(),
            "fraud_flags": np.ascontiguousarray(self.is_fraud, dtype=np.uint8).tobytes(),
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> HistoryRecord:
        """Inverse of :meth:`to_avro`; inconsistent packed fields raise."""
        packed = record["timestamps"]
        if len(packed) % 8:
            raise TerminalFeaturesError(
                f"terminal {record['terminal_id']}: timestamps field is {len(packed)} bytes, "
                "not a multiple of 8"
            )
        ts = np.frombuffer(packed, dtype=_LE_INT64).astype(np.int64)
        flags = np.frombuffer(record["fraud_flags"], dtype=np.uint8)
        return cls(
            int(record["terminal_id"]),
            int(record["as_of"]),
            int(record["label_delay_ms"]),
            ts,
            flags,
        )


def terminal_key(terminal_id: int) -> bytes:
    """Message key of a terminal: its id as decimal text."""
    return str(int(terminal_id)).encode()


def terminal_from_key(key: bytes | None) -> int:
    """Terminal id of a message key (for tombstones, which carry no value)."""
    try:
        return int((key or b"").decode())
    except (UnicodeDecodeError, ValueError):
        raise TerminalFeaturesError(f"terminal key {key!r} is not a decimal id") from None
