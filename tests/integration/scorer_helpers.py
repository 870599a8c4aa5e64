"""Shared set-up of the scorer's integration tests: topics, data, models, read-back.

Every test gets its own uuid-named topics (all six the scorer touches) and its
own registry under ``tmp_path``, so tests never see each other's records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.data.simulator import SimulatorConfig, simulate
from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION, feature_matrix
from pipeline.kafka import make_admin, make_consumer
from pipeline.model.params import DEFAULT_PARAMS, TrainParams
from pipeline.model.training import train_booster
from pipeline.registry import ModelRegistry, ModelVersion
from pipeline.scorer import ScorerWorker
from pipeline.serde import Serde
from pipeline.settings import Settings, TopicNames, load_settings
from pipeline.terminal import backfill

PARTITIONS = 3
MODEL_NAME = "fraud"
BIG_MESSAGE_BYTES = 4 * 1024 * 1024
"""Topic ``max.message.bytes`` and client ``message.max.bytes`` where 1 MB records travel."""


def scorer_topics(topic_factory: Callable[..., str], *, big_messages: bool = False) -> TopicNames:
    """Fresh topics for everything a scorer touches (changelog, labels, outcomes, stats too)."""
    big = {"max.message.bytes": str(BIG_MESSAGE_BYTES)} if big_messages else {}
    compact = {"cleanup.policy": "compact"}
    topics = TopicNames(
        transactions=topic_factory("tx", partitions=PARTITIONS, config=big),
        decisions=topic_factory("decisions", partitions=PARTITIONS),
        alerts=topic_factory("alerts", partitions=PARTITIONS),
        dlq=topic_factory("dlq", partitions=PARTITIONS, config=big),
        model_control=topic_factory("control", config=compact),
        terminal_features=topic_factory("terminal", partitions=PARTITIONS, config=compact),
        card_state_changelog=topic_factory("changelog", partitions=PARTITIONS, config=compact),
        labels=topic_factory("labels", partitions=PARTITIONS),
        outcomes=topic_factory("outcomes"),
        monitor_stats=topic_factory("stats"),
    )
    return topics


def wait_until_visible(settings: Settings, timeout_s: float = 15.0) -> None:
    """Wait until the test's own topics show in metadata with their partitions.

    A topic is created before the broker's metadata answers list it; the worker
    checks its topics once at start and would refuse to run.
    """
    admin = make_admin(settings)
    defaults = TopicNames().model_dump()
    names = {v for k, v in settings.topics.model_dump().items() if v != defaults[k]}
    deadline = time.monotonic() + timeout_s
    while True:
        listed = admin.list_topics(timeout=10).topics
        missing = [
            name
            for name in names
            if name not in listed or listed[name].error is not None or not listed[name].partitions
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topics not visible after {timeout_s}s: {missing}")
        time.sleep(0.1)


def scorer_settings(
    bootstrap: str, topics: TopicNames, registry_dir: Path, **overrides: Any
) -> Settings:
    """Settings of one test: its broker, topics (once visible), registry, a 7-day label delay."""
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        topics=topics,
        registry_dir=registry_dir,
        label_delay_days=7,
        **overrides,
    )
    wait_until_visible(settings)
    return settings


def env_for(settings: Settings) -> dict[str, str]:
    """``FRAUD_*`` variables that give a subprocess the same broker, topics and registry."""
    topics = settings.topics
    return {
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FRAUD_REGISTRY_DIR": str(settings.registry_dir),
        "FRAUD_LABEL_DELAY_DAYS": str(settings.label_delay_days),
        "FRAUD_TOPICS__TRANSACTIONS": topics.transactions,
        "FRAUD_TOPICS__DECISIONS": topics.decisions,
        "FRAUD_TOPICS__ALERTS": topics.alerts,
        "FRAUD_TOPICS__DLQ": topics.dlq,
        "FRAUD_TOPICS__MODEL_CONTROL": topics.model_control,
        "FRAUD_TOPICS__TERMINAL_FEATURES": topics.terminal_features,
        "FRAUD_TOPICS__CARD_STATE_CHANGELOG": topics.card_state_changelog,
        "FRAUD_TOPICS__LABELS": topics.labels,
        "FRAUD_TOPICS__OUTCOMES": topics.outcomes,
        "FRAUD_TOPICS__MONITOR_STATS": topics.monitor_stats,
    }


# --- data and models ----------------------------------------------------------


def simulated(days: int, seed: int = 7, customers: int = 300, terminals: int = 600) -> pd.DataFrame:
    """A small handbook-simulator frame (a few hundred transactions a day)."""
    return simulate(
        SimulatorConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    )


def day_index(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Day of each row, counted from the first day of the frame."""
    first = frame["timestamp"].min().normalize()
    days: npt.NDArray[np.int64] = (frame["timestamp"] - first).dt.days.to_numpy(np.int64)
    return days


def train_on(
    frame: pd.DataFrame, rows: npt.NDArray[np.bool_], params: TrainParams = DEFAULT_PARAMS
) -> xgboost.Booster:
    """A booster trained on ``rows`` of the frame, features computed on the whole frame."""
    features = feature_matrix(frame)
    labels = frame["is_fraud"].to_numpy()
    return train_booster(features[rows], labels[rows], FEATURE_NAMES, params.replace(nthread=1))


def register(
    registry: ModelRegistry,
    booster: xgboost.Booster,
    frame: pd.DataFrame,
    *,
    params: TrainParams = DEFAULT_PARAMS,
    alias: str | None = None,
) -> ModelVersion:
    """Store ``booster`` as the next version (optionally under an alias)."""
    return registry.register(
        booster,
        features=FEATURE_NAMES,
        params=params.to_dict(),
        data_range=(str(frame["timestamp"].min()), str(frame["timestamp"].max())),
        metrics={},
        feature_set_version=FEATURE_SET_VERSION,
        alias=alias,  # type: ignore[arg-type]
    )


def serve_champion(settings: Settings, frame: pd.DataFrame, train_days: int) -> ModelVersion:
    """What a scorer needs before the stream starts: a champion trained on the first
    ``train_days`` days of ``frame``, and the terminal table backfilled from all of it."""
    version = register(
        ModelRegistry(settings.registry_dir),
        train_on(frame, day_index(frame) < train_days),
        frame,
        alias="champion",
    )
    backfill(settings, frame)
    return version


# --- reading topics back ------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def header(self, name: str) -> str:
        return self.headers[name].decode()


def read_all(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every message on ``topic`` up to its current end, in partition then offset order."""
    consumer: Consumer = make_consumer(
        settings,
        f"read-back-{topic}",
        **{
            "fetch.message.max.bytes": BIG_MESSAGE_BYTES,
            "isolation.level": "read_committed",
            # The end is the partition-EOF event, not the last offset: with
            # transactions the last offsets hold commit markers, never delivered.
            "enable.partition.eof": True,
        },
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[Record] = []
        pending = set(ends)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"read only {len(out)} records of {topic} in {timeout_s}s")
            for message in consumer.consume(5000, 0.2):
                error = message.error()
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    if offset >= ends[partition]:
                        pending.discard(partition)
                    continue
                assert error is None, error
                out.append(
                    Record(
                        partition,
                        offset,
                        message.key(),
                        message.value(),
                        {name: value or b"" for name, value in message.headers() or []},
                    )
                )
    finally:
        consumer.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def decode_decisions(records: list[Record]) -> pd.DataFrame:
    """Decisions as a frame (one row per record, read-back order, with features as lists)."""
    codec = Serde.local().codec("Decision")
    rows = [codec.decode(r.value or b"") for r in records]
    return pd.DataFrame(rows)


# --- running a worker beside the test ---------------------------------------


class WorkerThread:
    """A started worker whose loop runs in a thread while the test drives the input."""

    def __init__(self, worker: ScorerWorker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported to the test by wait_for/stop
            self.error = exc

    def __enter__(self) -> WorkerThread:
        self.worker.start()
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.worker.stop()
        self._thread.join(30)
        self.worker.close()
        assert not self._thread.is_alive(), "the worker did not stop within 30 s"
        if self.error is not None and exc_type is None:
            raise AssertionError("the worker failed") from self.error

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        """Wait until ``condition()``; fail if the worker died or the time ran out."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.error is not None:
                raise AssertionError(f"the worker died waiting for {what}") from self.error
            if not self._thread.is_alive():
                raise AssertionError(f"the worker stopped waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.worker.summary}")
            time.sleep(0.02)

    def wait_decided(self, count: int, timeout_s: float = 30.0) -> None:
        summary = self.worker.summary
        self.wait_for(lambda: summary.decided >= count, f"{count} decisions", timeout_s)
