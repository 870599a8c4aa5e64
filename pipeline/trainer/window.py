"""Choose the training and holdout days, favouring data from after a drift.

Pure functions over day numbers (days since 1970-01-01 UTC) and labels. The
holdout is the most recent mature days, so challenger and champion are judged
on what the model will face next. Training uses the days before it: only the
days since the drift started when they hold enough labelled frauds (an old
regime would teach the model the pattern that stopped working), else the last
``train_days`` days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.features.spec import DAY_MS
from pipeline.trainer.errors import NotEnoughDataError

I64 = npt.NDArray[np.int64]
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class WindowPolicy:
    """How many days to hold out and train on, and when post-drift data is enough."""

    holdout_days: int = 7
    train_days: int = 21
    min_post_drift_frauds: int = 100

    def __post_init__(self) -> None:
        if self.holdout_days < 1 or self.train_days < 1:
            raise ValueError("holdout_days and train_days must be >= 1")
        if self.min_post_drift_frauds < 1:
            raise ValueError("min_post_drift_frauds must be >= 1")


@dataclass(frozen=True)
class DayRange:
    """Calendar days ``first..last``, both inclusive."""

    first: int
    last: int

    def mask(self, days: I64) -> npt.NDArray[np.bool_]:
        """Which of ``days`` fall in the range."""
        return (days >= self.first) & (days <= self.last)

    @property
    def first_date(self) -> dt.date:
        return _EPOCH + dt.timedelta(days=self.first)

    @property
    def last_date(self) -> dt.date:
        return _EPOCH + dt.timedelta(days=self.last)

    def to_json(self) -> dict[str, str]:
        """ISO dates, as the registry stores ranges."""
        return {"start": self.first_date.isoformat(), "end": self.last_date.isoformat()}

    def __str__(self) -> str:
        return f"{self.first_date}..{self.last_date}"


@dataclass(frozen=True)
class Windows:
    """The chosen split, with whether (and why) it is post-drift only."""

    train: DayRange
    holdout: DayRange
    post_drift: bool
    note: str


def day_of(timestamp_ms: int) -> int:
    """The calendar day of an epoch-ms time."""
    return timestamp_ms // DAY_MS


def choose_windows(
    days: I64,
    is_fraud: npt.ArrayLike,
    policy: WindowPolicy = WindowPolicy(),
    drift_start_ms: int | None = None,
) -> Windows:
    """Split the labelled rows' days into a training and a holdout range.

    ``days`` and ``is_fraud`` describe the mature labelled rows. Raises
    :class:`NotEnoughDataError` when a range would be empty or have no fraud
    (no model can be trained, or judged, on one class).
    """
    days = np.asarray(days, dtype=np.int64)
    fraud = np.asarray(is_fraud).astype(bool)
    if len(days) == 0:
        raise NotEnoughDataError("no mature labelled decisions in the requested range")
    present = np.unique(days)
    last = int(present[-1])
    holdout = DayRange(last - policy.holdout_days + 1, last)
    before = present[present < holdout.first]
    if len(before) == 0:
        raise NotEnoughDataError(
            f"only {len(present)} day(s) of mature labels ({_span(present)}); need more than the "
            f"{policy.holdout_days}-day holdout"
        )
    holdout_frauds = int(fraud[holdout.mask(days)].sum())
    if holdout_frauds == 0:
        raise NotEnoughDataError(f"no labelled fraud in the holdout {holdout}; cannot judge models")

    train_last = holdout.first - 1
    recent = DayRange(max(int(before[0]), holdout.first - policy.train_days), train_last)
    train, post_drift, note = recent, False, f"the last {policy.train_days} days before the holdout"
    if drift_start_ms is not None:
        drift_day = day_of(drift_start_ms)
        if drift_day > train_last:
            note = f"drift started {_date(drift_day)}, after the training days; {note}"
        else:
            since = DayRange(max(drift_day, recent.first), train_last)
            frauds = int(fraud[since.mask(days)].sum())
            if frauds >= policy.min_post_drift_frauds:
                train, post_drift = since, True
                note = f"post-drift only: {frauds} labelled frauds since {_date(drift_day)}"
            else:
                note = (
                    f"only {frauds} labelled frauds since the drift on {_date(drift_day)} "
                    f"(< {policy.min_post_drift_frauds}); {note}"
                )
    in_train = train.mask(days)
    train_frauds = int(fraud[in_train].sum())
    if train_frauds == 0:
        raise NotEnoughDataError(f"no labelled fraud in the training days {train}")
    if train_frauds == int(in_train.sum()):
        raise NotEnoughDataError(f"no genuine transaction in the training days {train}")
    return Windows(train=train, holdout=holdout, post_drift=post_drift, note=note)


def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def _span(days: I64) -> str:
    return f"{_date(int(days[0]))}..{_date(int(days[-1]))}"
