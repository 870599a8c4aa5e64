"""What a replay did: counts, time taken, delivery errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplaySummary:
    """Counts of a finished replay; ``delivery_errors`` includes undelivered messages."""

    transactions: int
    labels: int
    seconds: float
    delivery_errors: int = 0
    first_error: str | None = None

    @property
    def events(self) -> int:
        return self.transactions + self.labels

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.delivery_errors == 0

    def describe(self) -> str:
        """A short human-readable report."""
        text = (
            f"sent {self.transactions:,} transactions and {self.labels:,} labels "
            f"in {self.seconds:.1f} s ({self.events_per_second:,.0f} events/s); "
            f"delivery errors: {self.delivery_errors:,}"
        )
        if self.first_error:
            text += f" (first: {self.first_error})"
        return text
