"""Knobs of one scorer worker (the cluster and topics come from Settings)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any


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
    batch_size: int = 5000
    """Most records one batch takes. Only a backlog fills it: the loop takes
    whatever is queued, however few, so below capacity batches stay small (about
    190 records at 20k events/s) and latency does not depend on it. Reading a
    backlog, each batch pays a fixed cost in Python calls, which 5,000 records
    spread thinner than 2,000: the scorer's CPU per event fell by about 9%
    against the I/O ceiling's work on the same batches, and in alternating
    throughput runs it decided 232-344k events/s against 196-281k
    (`docs/benchmarks.md`)."""
    linger_ms: float = 2.0
    """How long the producer waits to fill a request (latency against broker load)."""
    compression: str = "none"
    """Producer compression of the outputs. Compressing costs this (CPU-bound)
    process about 15% of its throughput; choose lz4 where the network is the limit."""
    poll_timeout_s: float = 0.01
    """Most time the loop waits for a first record when none is queued; queued
    records are taken at once, however few."""
    fetch_min_bytes: int = 65_536
    """Bytes a fetch waits for (at most ``fetch.wait.max.ms`` = 10 ms). Fewer,
    fuller fetches leave the broker CPU for everything else: at 20k events/s on a
    shared 2-core host, p99 latency fell from 260-350 ms with 1 byte to 100-145 ms."""
    fetch_queue_backoff_ms: int = 20
    """How long librdkafka postpones a partition's next fetch once its local queue
    holds more than ``queued.min.messages`` (20,000). Its default, 1,000 ms, let
    the queue run dry: a scorer reading a backlog waited 0.1-0.8 s for data
    several times per 300k events, and its throughput fell from 117k to 70-80k
    events/s in about half the runs."""
    commit_interval_s: float | None = None
    commit_max_batches: int = 50
    exactly_once: bool = True
    transactional_id: str | None = None
    model_ref: str = "champion"
    explain: bool = True
    terminal_features: bool = True
    changelog: bool = True
    outcomes: bool = True
    monitor_stats: bool = True
    stats_window_ms: int = 3_600_000
    stats_grace_ms: int = 600_000
    stats_idle_ms: int = 30_000
    """An assigned partition silent this long (processing time) stops holding
    back the window statistics' watermark and, while not read yet, the label join."""
    terminal_catch_up_timeout_s: float = 60.0
    latency_sample_every: int = 64
    session_timeout_ms: int = 15_000
    dlq_max_value_bytes: int | None = None
    commit_watchdog_s: float = 120.0
    changelog_chunk: int = 20_000
    """State rows buffered before a changelog write (also written at every commit)."""
    tune_gc: bool = True
    """Freeze startup objects out of GC scans and collect young objects less often
    (process-wide: the worker is meant to own its process)."""

    @property
    def effective_commit_interval_s(self) -> float:
        """Exactly-once: outputs become visible at commit, so commit often.
        At-least-once: outputs are visible at once; commits only bound replays."""
        if self.commit_interval_s is not None:
            return self.commit_interval_s
        return 0.05 if self.exactly_once else 1.0

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"{self.group_id}-{self.worker_id}"

    def consumer_overrides(self) -> dict[str, Any]:
        """librdkafka settings of the worker's input consumer (no callbacks)."""
        return {
            "group.id": self.group_id,
            # Static membership: a worker restarted under the same id (after a
            # crash or a deploy) takes its partitions back at once instead of
            # waiting for the dead member's session to expire.
            "group.instance.id": self.worker_id,
            "session.timeout.ms": self.session_timeout_ms,
            "client.id": f"scorer-{self.worker_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.min.bytes": self.fetch_min_bytes,
            "fetch.wait.max.ms": 10,
            "queued.min.messages": 20000,
            "fetch.queue.backoff.ms": self.fetch_queue_backoff_ms,
        }

    def producer_overrides(self) -> dict[str, Any]:
        """librdkafka settings of the worker's output producer (no callbacks)."""
        overrides: dict[str, Any] = {
            "client.id": f"scorer-{self.worker_id}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "batch.size": 1_000_000,
            "compression.type": self.compression,
            "queue.buffering.max.messages": 500_000,
            # Delivery reports cost a Python call per record; only failures matter.
            "delivery.report.only.error": True,
        }
        if self.exactly_once:
            overrides["transactional.id"] = self.effective_transactional_id
            # A dead worker's open transaction blocks read_committed readers of
            # its partitions until it times out: keep that short.
            overrides["transaction.timeout.ms"] = 15_000
            # Right after a commit the coordinator is still writing the markers and
            # answers the next transaction's AddPartitions/AddOffsets with
            # CONCURRENT_TRANSACTIONS; librdkafka retries after retry.backoff.ms,
            # 100 ms by default, which stalled one commit in about 40 by 100-120
            # ms at 20k events/s (the Java client uses 20 ms for this retry).
            overrides["retry.backoff.ms"] = 10
        return overrides
