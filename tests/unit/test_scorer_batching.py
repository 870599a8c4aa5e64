"""How the scorer's loop takes a batch from the consumer (no broker needed)."""

from __future__ import annotations

from collections import deque
from typing import Any

from pipeline.scorer.worker import next_batch


class Queue:
    """The consumer's local queue with librdkafka's waiting rules: ``consume(n, t)``
    returns early only once ``n`` records are there, ``poll(t)`` at the first one.
    Records in ``arriving`` show up only when someone waits."""

    def __init__(self, queued: list[int], arriving: list[int] | None = None) -> None:
        self.queued = deque(queued)
        self.arriving = list(arriving or [])
        self.waited: list[tuple[str, float]] = []

    def _wait(self, how: str, timeout: float) -> None:
        if timeout > 0:
            self.waited.append((how, timeout))
            self.queued.extend(self.arriving)
            self.arriving.clear()

    def consume(self, n: int, timeout: float) -> list[Any]:
        if len(self.queued) < n:
            self._wait("consume", timeout)
        return [self.queued.popleft() for _ in range(min(n, len(self.queued)))]

    def poll(self, timeout: float) -> Any:
        if not self.queued:
            self._wait("poll", timeout)
        return self.queued.popleft() if self.queued else None


def test_queued_records_are_taken_without_waiting_for_a_full_batch() -> None:
    queue = Queue([1, 2, 3], arriving=[4])
    assert next_batch(queue, 2000, 0.01) == [1, 2, 3]  # type: ignore[arg-type]
    assert queue.waited == []


def test_a_batch_never_exceeds_its_size() -> None:
    queue = Queue(list(range(10)))
    assert next_batch(queue, 4, 0.01) == [0, 1, 2, 3]  # type: ignore[arg-type]
    assert next_batch(queue, 4, 0.01) == [4, 5, 6, 7]  # type: ignore[arg-type]
    assert list(queue.queued) == [8, 9]


def test_an_empty_queue_waits_for_the_first_record_only() -> None:
    queue = Queue([], arriving=[7, 8, 9])
    assert next_batch(queue, 2, 0.25) == [7, 8]  # type: ignore[arg-type]
    assert queue.waited == [("poll", 0.25)]
    assert list(queue.queued) == [9]


def test_nothing_arriving_gives_an_empty_batch_after_one_wait() -> None:
    queue = Queue([])
    assert next_batch(queue, 2000, 0.05) == []  # type: ignore[arg-type]
    assert queue.waited == [("poll", 0.05)]


def test_a_batch_of_one_takes_the_polled_record_alone() -> None:
    queue = Queue([], arriving=[1, 2])
    assert next_batch(queue, 1, 0.01) == [1]  # type: ignore[arg-type]
