"""The training data range of each model version, read from the registry.

An outcome whose transaction lies inside the range a model version was
trained on is in-sample: the model has seen it, so its error says nothing
about drift. Feeding such outcomes to the error detector first shows the
model's (low) training error and then its (higher) out-of-sample error, a
rise that is not drift. The monitor therefore keeps them from the error
detector (:attr:`MonitorConfig.error_skip_in_sample`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.registry import ModelRegistry, RegistryError

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

#: ``(model_name, model_version) -> range`` or None when the range is unknown.
TrainingRangeLookup = Callable[[str, str], "TrainingRange | None"]


@dataclass(frozen=True)
class TrainingRange:
    """Transaction times ``[start_ms, end_ms)`` a model version was trained on."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(f"training range [{self.start_ms}, {self.end_ms}) is empty")

    def contains(self, timestamp_ms: int) -> bool:
        """True if a transaction at ``timestamp_ms`` is inside the range."""
        return self.start_ms <= timestamp_ms < self.end_ms

    @classmethod
    def from_data_range(cls, data_range: tuple[str, str]) -> TrainingRange:
        """Parse a registry ``data_range``: ISO dates (end day included) or times (UTC if naive).

        Raises ``ValueError`` for text that is neither.
        """
        start, end = data_range
        return cls(_epoch_ms(start, end_of_day=False), _epoch_ms(end, end_of_day=True))


def _epoch_ms(text: str, *, end_of_day: bool) -> int:
    value = text.strip()
    if len(value) == 10:  # a plain date: the whole day
        day = dt.date.fromisoformat(value)
        moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000) + (DAY_MS if end_of_day else 0)
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


class RegistryTrainingRanges:
    """Training ranges looked up in a model registry directory, cached per version.

    A version that cannot be found (not registered yet, registry unreadable,
    malformed range) yields None, is logged once, and is looked up again
    after ``retry_s`` seconds; a found range never changes (versions are
    immutable).
    """

    def __init__(self, root: Path | str, *, retry_s: float = 60.0) -> None:
        self.root = Path(root)
        self.retry_s = retry_s
        self._found: dict[tuple[str, str], TrainingRange] = {}
        self._missed: dict[tuple[str, str], float] = {}

    def __call__(self, model_name: str, model_version: str) -> TrainingRange | None:
        key = (model_name, model_version)
        found = self._found.get(key)
        if found is not None:
            return found
        missed_at = self._missed.get(key)
        if missed_at is not None and time.monotonic() - missed_at < self.retry_s:
            return None
        try:
            version = ModelRegistry(self.root, model_name).get(model_version)
            found = TrainingRange.from_data_range(version.data_range)
        except (RegistryError, ValueError) as exc:
            if missed_at is None:
                log.warning(
                    "training range of %s:%s unknown (%s); its in-sample outcomes are not "
                    "recognised",
                    model_name,
                    model_version,
                    exc,
                )
            self._missed[key] = time.monotonic()
            return None
        self._missed.pop(key, None)
        self._found[key] = found
        return found
