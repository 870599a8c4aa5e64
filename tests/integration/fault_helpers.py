"""Helpers of the fault tests: scorer processes with drained output, background replay,
a metrics/offset timeline, topics with any partition count and replication.

Scorer processes here drain their output in a thread (a full pipe would block a
worker whose clients log a broker outage) and stamp every line with the test's
monotonic clock, so group events (assigned, revoked) line up with the timeline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from eos_helpers import ROOT, assert_same_features, read_committed_decisions
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka import make_admin, make_consumer
from pipeline.replay import ReplaySummary, replay
from pipeline.scorer import ScorerConfig, ScorerWorker
from pipeline.settings import Settings, TopicNames

TopicFactory = Callable[..., str]

# --- topics -------------------------------------------------------------------


class ClusterTopics:
    """``topic_factory``-compatible creator for a cluster of the test's own."""

    def __init__(self, bootstrap: str, replication_factor: int = 1, min_isr: int | None = None):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.replication_factor = replication_factor
        self.min_isr = min_isr

    def __call__(
        self,
        prefix: str = "test",
        partitions: int = 1,
        replication_factor: int | None = None,
        config: dict[str, str] | None = None,
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        settings = dict(config or {})
        if self.min_isr is not None:
            settings.setdefault("min.insync.replicas", str(self.min_isr))
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor or self.replication_factor,
            config=settings,
        )
        self.admin.create_topics([topic])[name].result(timeout=60)
        return name


def co_partitioned_topics(create: TopicFactory, partitions: int) -> TopicNames:
    """Every topic a scorer touches; the card-keyed ones with ``partitions`` partitions."""
    compact = {"cleanup.policy": "compact"}
    return TopicNames(
        transactions=create("tx", partitions=partitions),
        decisions=create("decisions", partitions=partitions),
        alerts=create("alerts", partitions=partitions),
        dlq=create("dlq", partitions=partitions),
        model_control=create("control", config=compact),
        terminal_features=create("terminal", partitions=3, config=compact),
        card_state_changelog=create("changelog", partitions=partitions, config=compact),
        labels=create("labels", partitions=partitions),
        outcomes=create("outcomes"),
        monitor_stats=create("stats"),
    )


def rerun_topics(create: TopicFactory, first: TopicNames, partitions: int) -> TopicNames:
    """Same input and tables as ``first``; outputs and state of its own."""
    return first.model_copy(
        update={
            "decisions": create("decisions-ref", partitions=partitions),
            "alerts": create("alerts-ref", partitions=partitions),
            "dlq": create("dlq-ref", partitions=partitions),
            "card_state_changelog": create(
                "changelog-ref", partitions=partitions, config={"cleanup.policy": "compact"}
            ),
            "outcomes": create("outcomes-ref"),
            "monitor_stats": create("stats-ref"),
        }
    )


# --- the stream -----------------------------------------------------------------


class BackgroundReplay:
    """``replay(settings, frame, speed=...)`` in a thread, paced to last about ``seconds``."""

    def __init__(self, settings: Settings, frame: pd.DataFrame, seconds: float) -> None:
        span_s = (frame["timestamp"].max() - frame["timestamp"].min()).total_seconds()
        self.speed = max(span_s / seconds, 1.0)
        self.settings = settings
        self.frame = frame
        self.summary: ReplaySummary | None = None
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)

    def _run(self) -> None:
        try:
            self.summary = replay(self.settings, self.frame, speed=self.speed)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def start(self) -> BackgroundReplay:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float = 120.0) -> ReplaySummary:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the replay did not finish within {timeout_s}s"
        if self.error is not None:
            raise AssertionError("the replay failed") from self.error
        assert self.summary is not None
        assert self.summary.ok, f"replay: {self.summary.describe()}"
        return self.summary


# --- scorer processes -----------------------------------------------------------

_ASSIGNED = re.compile(r"\b(assigned|revoked|lost) \[([0-9, ]*)\]")
_DECIDED = re.compile(r"^decided (\d+), alerts")
_METRICS = re.compile(r"metrics on (http://\S+/metrics)")


@dataclass(repr=False)
class ScorerProcess:
    """One ``fraud score --exactly-once`` process and its output, line by line."""

    name: str
    process: subprocess.Popen[str]
    started_at: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    _drain: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._drain = threading.Thread(target=self._read, name=f"drain-{self.name}", daemon=True)
        self._drain.start()

    def __repr__(self) -> str:
        return f"ScorerProcess({self.name}, pid {self.process.pid}, rc {self.process.returncode})"

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in list(self.lines))

    def tail(self, count: int = 30) -> str:
        return "\n".join(line for _, line in list(self.lines)[-count:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_exit(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        if self._drain is not None:
            self._drain.join(10)
        return code

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (finish batch, commit, close) and wait for the exit."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout_s)

    def dump_stacks(self, timeout_s: float = 15.0) -> str:
        """SIGABRT a live worker: faulthandler prints every thread's Python stack, then it dies.

        For a worker that hangs: shows the call it is blocked in."""
        if not self.alive():
            return ""
        seen = len(self.lines)
        self.process.send_signal(signal.SIGABRT)
        try:
            self.wait_exit(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        return "\n".join(line for _, line in list(self.lines)[seen:] if not line.startswith("%"))

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def group_events(self) -> list[tuple[float, str, list[int]]]:
        """(time, assigned|revoked|lost, partitions) from the worker's log."""
        events = []
        for at, line in list(self.lines):
            match = _ASSIGNED.search(line)
            if match:
                parts = [int(p) for p in match.group(2).replace(" ", "").split(",") if p]
                events.append((at, match.group(1), parts))
        return events

    def owned(self) -> set[int]:
        """Partitions the worker holds by its log (cooperative: increments add/remove)."""
        held: set[int] = set()
        for _, kind, parts in self.group_events():
            if kind == "assigned":
                held |= set(parts)
            else:
                held -= set(parts)
        return held

    def decided(self) -> int | None:
        """Decisions the worker reported in its exit summary (None before it exits)."""
        for _, line in list(self.lines):
            match = _DECIDED.search(line)
            if match:
                return int(match.group(1))
        return None

    def metrics_url(self, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for _, line in list(self.lines):
                match = _METRICS.search(line)
                if match:
                    return match.group(1).replace("0.0.0.0", "127.0.0.1")
            assert self.alive(), f"{self.name} exited: {self.tail()}"
            time.sleep(0.1)
        raise AssertionError(f"{self.name} announced no metrics endpoint in {timeout_s}s")


def spawn_scorer(
    env: dict[str, str],
    worker_id: str,
    group: str,
    *,
    idle_timeout_s: float | None = None,
    metrics: bool = False,
    batch_size: int = 1000,
) -> ScorerProcess:
    """``fraud score --exactly-once`` in its own process; metrics on a free port if asked."""
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "score",
        "--exactly-once",
        "--worker-id",
        worker_id,
        "--group",
        group,
        "--batch-size",
        str(batch_size),
    ]
    command += ["--metrics-port", "0"] if metrics else ["--no-metrics"]
    if idle_timeout_s is not None:
        command += ["--idle-timeout", str(idle_timeout_s)]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"},
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return ScorerProcess(worker_id, process, time.monotonic())


def kill_all(processes: Iterable[ScorerProcess]) -> None:
    for scorer in processes:
        scorer.kill()


# --- progress -----------------------------------------------------------------


class CommittedOffsets:
    """The group's committed offsets on the input, through one long-lived consumer."""

    def __init__(self, settings: Settings, group: str, topic: str, partitions: int) -> None:
        # read_uncommitted: an offset fetch then skips offsets pending in an open
        # transaction instead of waiting (up to its timeout) for that transaction to end.
        self._consumer = make_consumer(settings, group, **{"isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def per_partition(self, timeout_s: float = 10.0) -> list[int]:
        """Committed offset per partition; retries while a coordinator moves (failover)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                committed = self._consumer.committed(self._tps, timeout=timeout_s)
                return [max(tp.offset, 0) for tp in committed]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def ends(self, timeout_s: float = 10.0) -> list[int]:
        """High watermarks of the input partitions."""
        return [self._consumer.get_watermark_offsets(tp, timeout_s)[1] for tp in self._tps]

    def moved_on(self, partitions: list[int], before: list[int]) -> bool:
        """Each of ``partitions`` committed past ``before`` (indexed by partition) or to its end."""
        now, ends = self.per_partition(), self.ends()
        return all(now[p] > before[p] or now[p] >= ends[p] for p in partitions)

    def total(self, timeout_s: float = 10.0) -> int:
        return sum(self.per_partition(timeout_s))

    def close(self) -> None:
        self._consumer.close()


def owner_of_all(workers: Iterable[ScorerProcess], partitions: Iterable[int]) -> bool:
    """Whether ``workers`` hold every one of ``partitions`` between them (by their logs)."""
    held: set[int] = set()
    for worker in workers:
        held |= worker.owned()
    return set(partitions) <= held


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float,
    workers: Iterable[ScorerProcess] = (),
    interval_s: float = 0.3,
) -> float:
    """Wait for ``condition``; fail at once if a worker that must live has exited."""
    watched = list(workers)
    started = time.monotonic()
    while not condition():
        for scorer in watched:
            if not scorer.alive():
                raise AssertionError(
                    f"{scorer.name} exited ({scorer.process.returncode}) waiting for {what}:\n"
                    f"{scorer.tail()}"
                )
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


# --- the reference and the verdict ------------------------------------------------


def reference_decisions(settings: Settings, n: int, timeout_s: float = 180.0) -> dict[str, Any]:
    """One uninterrupted in-process exactly-once run over the whole input."""
    worker = ScorerWorker(
        settings,
        ScorerConfig(
            group_id=f"reference-{uuid.uuid4().hex[:8]}", worker_id="ref", exactly_once=True
        ),
    )
    worker.start()
    try:
        worker.run(max_events=n, idle_timeout_s=60, until=_deadline(timeout_s))
    finally:
        worker.close()
    expected = read_committed_decisions(settings, settings.topics.decisions)
    assert len(expected["transaction_id"]) == n, "the reference run did not decide everything"
    return expected


def wait_visible_decisions(
    settings: Settings, n: int, timeout_s: float = 150.0, every_s: float = 3.0
) -> tuple[dict[str, Any], float]:
    """Committed decisions once ``n`` are visible to read_committed readers, and how long
    that took: an open transaction of a dead worker holds back (until it times out) the
    last stable offset of every partition it wrote to, and so what readers see there."""
    started = time.monotonic()
    while True:
        decisions = read_committed_decisions(settings, settings.topics.decisions)
        if len(decisions["transaction_id"]) >= n or time.monotonic() - started > timeout_s:
            return decisions, time.monotonic() - started
        time.sleep(every_s)


def _deadline(timeout_s: float) -> Callable[[], bool]:
    end = time.monotonic() + timeout_s
    return lambda: time.monotonic() > end


# --- metrics timeline ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One scrape: test clock, counters, summed lag; ``up`` False when unreachable."""

    at: float
    up: bool
    events_in: float = 0.0
    decisions_out: float = 0.0
    errors: float = 0.0
    lag: float = 0.0
    committed: int | None = None


def scrape(url: str, timeout_s: float = 2.0) -> dict[str, float]:
    """The scorer's counters and summed consumer lag from its Prometheus endpoint."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    values = {"events_in": 0.0, "decisions_out": 0.0, "errors": 0.0, "lag": 0.0}
    names = {
        "fraud_scorer_events_in_total": "events_in",
        "fraud_scorer_decisions_out_total": "decisions_out",
        "fraud_scorer_errors_total": "errors",
        "fraud_scorer_consumer_lag": "lag",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = names.get(sample.name)
            if key is not None:
                values[key] += sample.value
    return values


class Timeline:
    """Scrapes ``url`` every ``interval_s`` (and the committed total) in a thread."""

    def __init__(
        self,
        url: str,
        committed: Callable[[], int] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.url = url
        self.committed = committed
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.marks: list[tuple[float, str]] = []
        self.origin = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)

    def start(self) -> Timeline:
        self._thread.start()
        return self

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic(), what))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            committed = None
            if self.committed is not None:
                try:
                    committed = self.committed()
                except Exception:  # a broker outage: record the gap, keep sampling
                    committed = None
            try:
                values = scrape(self.url)
                self.samples.append(Sample(at, True, committed=committed, **values))
            except OSError:
                self.samples.append(Sample(at, False, committed=committed))
            self._stop.wait(max(self.interval_s - (time.monotonic() - at), 0.0))

    def stall_after(self, since: float) -> tuple[float, float | None]:
        """Longest span (s) without new decisions after ``since`` while input was pending,
        and when (s after ``since``) decisions first grew again after that span."""
        up = [s for s in self.samples if s.up]
        longest, resumed = 0.0, None
        still_since: float | None = None
        last_value = None
        for sample in up:
            if sample.at < since:
                last_value = sample.decisions_out
                continue
            if last_value is None:
                last_value = sample.decisions_out
            if sample.decisions_out > last_value:
                if still_since is not None:
                    span = sample.at - still_since
                    if span > longest:
                        longest, resumed = span, sample.at - since
                still_since = None
            elif still_since is None:
                still_since = sample.at
            last_value = sample.decisions_out
        return longest, resumed

    def rows(self, every_s: float = 1.0) -> list[str]:
        """A compact table: one row per ``every_s`` plus every mark."""
        out = ["   t(s)  events_in  decisions  rate/s  errors    lag  committed  note"]
        marks = sorted(self.marks)
        previous: Sample | None = None
        last_row = -1e9
        for sample in self.samples:
            notes = [
                what for at, what in marks if previous is not None and previous.at < at <= sample.at
            ]
            if sample.at - last_row < every_s and not notes:
                continue
            rate = 0.0
            if previous is not None and previous.up and sample.up and sample.at > previous.at:
                rate = (sample.decisions_out - previous.decisions_out) / (sample.at - previous.at)
            committed = "-" if sample.committed is None else str(sample.committed)
            if sample.up:
                out.append(
                    f"{sample.at - self.origin:7.1f} {sample.events_in:10.0f} "
                    f"{sample.decisions_out:10.0f} {rate:7.0f} {sample.errors:7.0f} "
                    f"{sample.lag:6.0f} {committed:>10}  {'; '.join(notes)}"
                )
            else:
                out.append(
                    f"{sample.at - self.origin:7.1f}  (metrics endpoint down)  {'; '.join(notes)}"
                )
            previous, last_row = sample, sample.at
        return out


def describe_features_mismatch(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """A short account of where two decision sets differ (for failure messages)."""
    e_ids, a_ids = expected["transaction_id"], actual["transaction_id"]
    missing = np.setdiff1d(e_ids, a_ids)
    unique, counts = np.unique(a_ids, return_counts=True)
    text = (
        f"{len(a_ids)} decisions ({len(unique)} distinct) vs {len(e_ids)} expected; "
        f"{len(missing)} missing, {int((counts > 1).sum())} duplicated"
    )
    origin = actual.get("origin")
    if origin is not None:
        for tx in unique[counts > 1][:5].tolist():
            copies = [
                "source {}@{}, decided_at {}, written to {}@{}".format(*row)
                for row in origin[a_ids == tx].tolist()
            ]
            text += f"\n  transaction {tx}: " + "; ".join(copies)
    return text


def assert_decided_once_as_reference(
    settings: Settings,
    topic_factory: TopicFactory,
    partitions: int,
    transaction_ids: npt.ArrayLike,
) -> None:
    """The exactly-once verdict: ``settings``' decisions topic holds one committed
    decision per transaction of ``transaction_ids``, each with the features an
    uninterrupted reference run (on fresh topics) serves."""
    expected_ids = np.asarray(transaction_ids)
    n = len(expected_ids)
    actual = read_committed_decisions(settings, settings.topics.decisions)
    reference = settings.model_copy(
        update={"topics": rerun_topics(topic_factory, settings.topics, partitions)}
    )
    expected = reference_decisions(reference, n)
    ids = actual["transaction_id"]
    summary = describe_features_mismatch(expected, actual)
    assert len(ids) == n, summary
    assert len(np.unique(ids)) == n, summary
    assert set(ids.tolist()) == set(expected_ids.tolist())
    assert_same_features(expected, actual)


def group_coordinator(settings: Settings, group: str) -> int:
    """Node id of the broker coordinating ``group``."""
    admin = make_admin(settings)
    description = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return int(description.coordinator.id)
