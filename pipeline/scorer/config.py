"""Knobs of one scorer worker (the cluster and topics come from Settings)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ScorerConfig:
    """How one worker batches, commits and identifies itself.

    ``exactly_once`` puts outputs, state changelog and input offsets in one
    Kafka transaction per commit; off, offsets are committed after the outputs
    are acknowledged (at-least-once, lowest latency).
    ``transactional_id`` must be stable across restarts of the same worker
    (zombie fencing); it defaults to ``<group>-<worker_id>``.
    """

    group_id: str = "fraud-scorer"
    worker_id: str = field(default_factory=default_worker_id)
    batch_size: int = 2000
    poll_timeout_s: float = 0.01
    commit_interval_s: float = 0.1
    commit_max_batches: int = 10
    exactly_once: bool = False
    transactional_id: str | None = None
    model_ref: str = "champion"
    explain: bool = True
    latency_sample_every: int = 16

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"{self.group_id}-{self.worker_id}"
