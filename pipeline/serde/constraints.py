"""Value constraints an Avro schema cannot express.

A transaction's amount must be finite and within ``[0, max_amount]``, its ids
non-negative and its timestamp within a sane range; a label's ids must be
non-negative and its label timestamp within the same range. Violations are
data: the decoders report them as ``invalid_value`` errors. The same rules run
per record and on whole columns, and give the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

TRANSACTION_ID_FIELDS = ("transaction_id", "card_id", "terminal_id")
LABEL_ID_FIELDS = ("transaction_id", "card_id")


@dataclass(frozen=True)
class Limits:
    """Bounds for incoming records; timestamps are epoch ms UTC, max exclusive."""

    max_amount: float = 1_000_000.0
    min_timestamp_ms: int = 946_684_800_000  # 2000-01-01
    max_timestamp_ms: int = 4_102_444_800_000  # 2100-01-01


def check_transaction(record: Mapping[str, Any], limits: Limits) -> str | None:
    """Why a decoded transaction is invalid, or ``None`` if it is fine."""
    return _check_values(
        record["transaction_id"],
        record["card_id"],
        record["terminal_id"],
        record["timestamp"],
        record["amount"],
        limits,
    )


def check_label(record: Mapping[str, Any], limits: Limits) -> str | None:
    """Why a decoded label is invalid, or ``None`` if it is fine."""
    return _check_label_values(
        record["transaction_id"], record["card_id"], record["label_timestamp"], limits
    )


def check_transaction_columns(
    transaction_id: npt.NDArray[np.int64],
    timestamp: npt.NDArray[np.int64],
    card_id: npt.NDArray[np.int64],
    terminal_id: npt.NDArray[np.int64],
    amount: npt.NDArray[np.float64],
    limits: Limits,
) -> npt.NDArray[np.bool_]:
    """Mask of invalid rows (same rules as :func:`check_transaction`)."""
    with np.errstate(invalid="ignore"):
        good = (amount >= 0.0) & (amount <= limits.max_amount)
    good &= (transaction_id >= 0) & (card_id >= 0) & (terminal_id >= 0)
    good &= (timestamp >= limits.min_timestamp_ms) & (timestamp < limits.max_timestamp_ms)
    return ~good


def explain_transaction_row(
    transaction_id: int,
    card_id: int,
    terminal_id: int,
    timestamp: int,
    amount: float,
    limits: Limits,
) -> str:
    """The message for one row flagged by :func:`check_transaction_columns`."""
    return (
        _check_values(transaction_id, card_id, terminal_id, timestamp, amount, limits) or "invalid"
    )


def check_label_columns(
    transaction_id: npt.NDArray[np.int64],
    card_id: npt.NDArray[np.int64],
    label_timestamp: npt.NDArray[np.int64],
    limits: Limits,
) -> npt.NDArray[np.bool_]:
    """Mask of invalid rows (same rules as :func:`check_label`)."""
    good = (transaction_id >= 0) & (card_id >= 0)
    good &= (label_timestamp >= limits.min_timestamp_ms) & (
        label_timestamp < limits.max_timestamp_ms
    )
    return ~good


def explain_label_row(
    transaction_id: int, card_id: int, label_timestamp: int, limits: Limits
) -> str:
    """The message for one row flagged by :func:`check_label_columns`."""
    return _check_label_values(transaction_id, card_id, label_timestamp, limits) or "invalid"


def _check_label_values(
    transaction_id: int, card_id: int, label_timestamp: int, limits: Limits
) -> str | None:
    for name, value in zip(LABEL_ID_FIELDS, (transaction_id, card_id), strict=True):
        if value < 0:
            return f"{name} {value} is negative"
    return _check_time("label_timestamp", label_timestamp, limits)


def _check_values(
    transaction_id: int,
    card_id: int,
    terminal_id: int,
    timestamp: int,
    amount: float,
    limits: Limits,
) -> str | None:
    if not 0.0 <= amount <= limits.max_amount:  # also false for NaN
        return f"amount {amount!r} outside [0, {limits.max_amount:g}]"
    for name, value in (
        ("transaction_id", transaction_id),
        ("card_id", card_id),
        ("terminal_id", terminal_id),
    ):
        if value < 0:
            return f"{name} {value} is negative"
    return _check_time("timestamp", timestamp, limits)


def _check_time(name: str, value: int, limits: Limits) -> str | None:
    if not limits.min_timestamp_ms <= value < limits.max_timestamp_ms:
        return f"{name} {value} outside [{limits.min_timestamp_ms}, {limits.max_timestamp_ms}) epoch ms"
    return None
