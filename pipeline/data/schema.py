"""The canonical transactions frame: column names, dtypes and fraud scenario codes.

This is the in-memory form of the data-file contract (DESIGN.md): the simulator
produces it and :func:`pipeline.data.io.read_transactions` returns it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class FraudScenario(IntEnum):
    """Why a transaction is fraudulent (``fraud_scenario`` column)."""

    NONE = 0
    LARGE_AMOUNT = 1
    """Amount above 220: always fraud (handbook scenario 1)."""
    COMPROMISED_TERMINAL = 2
    """Made at a terminal compromised in the last 28 days (handbook scenario 2)."""
    COMPROMISED_CARD = 3
    """One in three of a compromised card's transactions, amount x5 (handbook scenario 3)."""
    CARD_TESTING = 4
    """Drift pattern: small probe charges then a cash-out on a stolen card."""


REQUIRED_COLUMNS: Final = ("transaction_id", "timestamp", "card_id", "terminal_id", "amount")
LABEL_COLUMNS: Final = ("is_fraud", "fraud_scenario")
ALL_COLUMNS: Final = REQUIRED_COLUMNS + LABEL_COLUMNS

DTYPES: Final[dict[str, str]] = {
    "transaction_id": "int64",
    "timestamp": "datetime64[ns]",
    "card_id": "int64",
    "terminal_id": "int64",
    "amount": "float64",
    "is_fraud": "int8",
    "fraud_scenario": "int8",
}
"""dtype of each canonical column; timestamps are tz-naive UTC."""
