"""Helpers of the drift experiment: subprocesses, topic reading, consumer-group lag.

Kept apart from ``drift_experiment.py`` so the experiment reads as its steps.
Every wait is bounded; every process started here is stopped by its owner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.settings import Settings


def fraud(*args: str) -> list[str]:
    """The ``fraud`` command line run with this interpreter."""
    return [sys.executable, "-m", "pipeline", *args]


def run(command: list[str], env: dict[str, str], log: Path, timeout_s: float) -> str:
    """Run to completion (bounded); stdout returned, stderr appended to ``log``."""
    with log.open("a") as err:
        err.write(f"$ {' '.join(command[2:])}\n")
        err.flush()
        result = subprocess.run(
            command, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout_s
        )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited {result.returncode}; see {log}")
    return result.stdout


class Background:
    """A long-running ``fraud`` subprocess with its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("a")
        self._out.write(f"$ {' '.join(command[2:])}\n")
        self._out.flush()
        self.process = subprocess.Popen(
            command, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check(self) -> None:
        """Raise if the process has died."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"background process exited {code}; see {self.log}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; only this process (its own session)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._out.close()


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        settings.librdkafka_config(
            **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
    )


def _partitions(consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
    out = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=15)
        out += [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
    return out


def group_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Records on ``topics`` not yet committed by ``group`` (uncommitted = from the start).

    Offsets past the committed one that hold no record a read-committed
    consumer can see (the commit markers of transactional producers such as
    the scorer) are not lag: a consumer never receives them, so it may never
    commit past them.
    """
    consumer = _consumer(settings, group)
    try:
        committed = consumer.committed(_partitions(consumer, topics), timeout=15)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            behind = max(0, high - (tp.offset if tp.offset >= 0 else low))
            if 0 < behind <= _MARKER_SLACK and not _has_records(settings, tp, high):
                behind = 0
            lag += behind
        return lag
    finally:
        consumer.close()


#: Trailing offsets checked for visible records before they count as lag.
_MARKER_SLACK = 4


def _has_records(settings: Settings, tp: TopicPartition, high: int) -> bool:
    """True if a read-committed consumer sees a record in ``[tp.offset, high)``."""
    probe = Consumer(
        settings.librdkafka_config(
            **{
                "group.id": f"drift-probe-{os.getpid()}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    try:
        probe.assign([TopicPartition(tp.topic, tp.partition, max(tp.offset, 0))])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            message = probe.poll(0.2)
            if message is not None and message.error() is None:
                return (message.offset() or 0) < high
        return False
    finally:
        probe.close()


def commit_at_end(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit ``group`` at the current end of ``topics`` (it will start reading from there)."""
    consumer = _consumer(settings, group)
    try:
        ends = []
        for tp in _partitions(consumer, topics):
            _, high = consumer.get_watermark_offsets(tp, timeout=15)
            ends.append(TopicPartition(tp.topic, tp.partition, high))
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def wait_caught_up(
    settings: Settings,
    group: str,
    topics: list[str],
    timeout_s: float,
    alive: list[Background],
    settle_s: float = 0.0,
) -> float:
    """Wait (bounded) until ``group`` has committed everything on ``topics``; seconds waited.

    With ``settle_s``, the lag must stay zero that long (outputs still arriving).
    Raises TimeoutError with the remaining lag.
    """
    started = time.monotonic()
    zero_since: float | None = None
    lag = -1
    while time.monotonic() - started < timeout_s:
        for process in alive:
            process.check()
        lag = group_lag(settings, group, topics)
        now = time.monotonic()
        if lag == 0:
            zero_since = zero_since or now
            if now - zero_since >= settle_s:
                return now - started
        else:
            zero_since = None
        time.sleep(1.0)
    raise TimeoutError(f"group {group} still {lag} records behind on {topics} after {timeout_s}s")


def read_all(settings: Settings, topic: str, schema: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` up to its current end, decoded with ``schema``."""
    from pipeline.serde import Serde

    codec = Serde.from_settings(settings).codec(schema)
    consumer = _consumer(settings, f"drift-read-{os.getpid()}-{time.monotonic_ns()}")
    try:
        parts = _partitions(consumer, [topic])
        remaining = {}
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            if high > low:
                remaining[tp.partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    out.append(codec.decode(message.value() or b""))
            _drop_finished(consumer, topic, remaining)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
        return out
    finally:
        consumer.close()


def dlq_reasons(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Dead letters on the DLQ topic counted by ``stage/reason`` header (diagnostics)."""
    topic = settings.topics.dlq
    consumer = _consumer(settings, f"drift-dlq-{os.getpid()}-{time.monotonic_ns()}")
    counts: dict[str, int] = {}
    try:
        remaining = {}
        for tp in _partitions(consumer, [topic]):
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            if high > low:
                remaining[tp.partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.5):
                if message.error() is not None:
                    continue
                headers = _headers(message)
                key = (
                    f"{headers.get('fraud.dlq.stage', '?')}/{headers.get('fraud.dlq.reason', '?')}"
                )
                counts[key] = counts.get(key, 0) + 1
            _drop_finished(consumer, topic, remaining)
    finally:
        consumer.close()
    return counts


def _drop_finished(consumer: Consumer, topic: str, remaining: dict[int, int]) -> None:
    """Forget partitions read to their end (the position moves past commit markers too)."""
    positions = consumer.position([TopicPartition(topic, p) for p in remaining])
    for tp in positions:
        if tp.offset >= remaining.get(tp.partition, 0):
            remaining.pop(tp.partition, None)


def _headers(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in message.headers() or []:
        key, value = item[0], item[1]
        out[str(key)] = value.decode() if isinstance(value, bytes) else str(value or "")
    return out
