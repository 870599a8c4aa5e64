"""Pacing: send events at ``speed`` times real time, measured from the first event.

With speed 3600 one simulated hour passes per wall-clock second. The pacer
answers two questions from the wall clock: how many of the (time-sorted)
events are due now, and how long to wait for the next one. Waits are cut into
short steps so the caller keeps serving its producer while it waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.replay.errors import ReplayError

MAX_STEP_S = 0.05
"""Longest single wait: delivery reports and Ctrl-C are served at least this often."""


@dataclass(frozen=True)
class Pacer:
    """Maps event time (epoch ms) to wall time (seconds of a monotonic clock)."""

    speed: float
    first_event_ms: int
    start_wall_s: float

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ReplayError(f"speed must be > 0, got {self.speed}")

    def due_at(self, event_ms: int) -> float:
        """Wall time at which an event is due."""
        return self.start_wall_s + (event_ms - self.first_event_ms) / 1000.0 / self.speed

    def horizon_ms(self, now_s: float) -> float:
        """The latest event time that is due at wall time ``now_s``."""
        return self.first_event_ms + (now_s - self.start_wall_s) * self.speed * 1000.0

    def due_count(self, times_ms: npt.NDArray[np.int64], now_s: float) -> int:
        """How many of the sorted ``times_ms`` are due at ``now_s``."""
        return int(np.searchsorted(times_ms, self.horizon_ms(now_s), side="right"))

    def wait_step(self, event_ms: int, now_s: float) -> float:
        """Seconds to wait before checking again for the event; 0 when it is due."""
        return min(max(self.due_at(event_ms) - now_s, 0.0), MAX_STEP_S)


def wait_until_due(
    pacer: Pacer,
    event_ms: int,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> None:
    """Wait in short steps until ``event_ms`` is due (``sleep`` may serve a producer)."""
    while True:
        step = pacer.wait_step(event_ms, clock())
        if step <= 0.0:
            return
        sleep(step)
