"""The retrain job against a real broker.

Decisions carrying served feature vectors (the offline evaluator's, as the
parity test guarantees the scorer serves) and their delayed labels go to
per-test topics; a champion trained on the oldest days sits in a temporary
registry. The job must register a challenger with lineage and both models'
metrics, announce it on model-control without touching the champion, and
serve a redelivered request only once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from pipeline.cli.retrain import retrain
from pipeline.data.simulator import SimulatorConfig, simulate
from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION, feature_matrix
from pipeline.features.offline import timestamps_to_ms
from pipeline.features.spec import DAY_MS
from pipeline.kafka import make_consumer, make_producer
from pipeline.model.params import DEFAULT_PARAMS
from pipeline.model.training import train_booster
from pipeline.registry import ModelRegistry
from pipeline.serde import Serde, encode_decisions, encode_labels, schema_id_for
from pipeline.settings import Settings, TopicNames, load_settings
from pipeline.trainer import NotEnoughDataError, RetrainJob, RetrainSpec, WindowPolicy

pytestmark = pytest.mark.integration

DELAY_DAYS = 7
POLICY = WindowPolicy(holdout_days=5, train_days=10, min_post_drift_frauds=20)
PARAMS = DEFAULT_PARAMS.replace(n_estimators=20, nthread=1)  # tiny data: threads only cost
START = dt.date(2018, 4, 1)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate(
        SimulatorConfig(n_customers=200, n_terminals=400, n_days=30, seed=5, start_date=START)
    )


@pytest.fixture(scope="module")
def served(frame: pd.DataFrame) -> np.ndarray:
    return feature_matrix(frame, DELAY_DAYS * DAY_MS)


@pytest.fixture(scope="module")
def topics(kafka_bootstrap: str, frame: pd.DataFrame, served: np.ndarray) -> Iterator[TopicNames]:
    """Per-module topics holding every decision and label of the frame."""
    from confluent_kafka.admin import AdminClient, NewTopic

    suffix = uuid.uuid4().hex[:12]
    names = TopicNames(
        decisions=f"decisions-{suffix}",
        labels=f"labels-{suffix}",
        model_control=f"model-control-{suffix}",
        retrain_requests=f"retrain-requests-{suffix}",
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wanted = [
        NewTopic(names.decisions, 3, 1),
        NewTopic(names.labels, 3, 1),
        NewTopic(names.model_control, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(names.retrain_requests, 1, 1),
    ]
    for future in admin.create_topics(wanted).values():
        future.result(30)
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, topics=names)
    _produce_history(settings, frame, served)
    yield names
    for future in admin.delete_topics([t.topic for t in wanted], operation_timeout=30).values():
        future.result(30)


def _produce_history(settings: Settings, frame: pd.DataFrame, features: np.ndarray) -> None:
    serde = Serde.from_settings(settings)
    ts = timestamps_to_ms(frame["timestamp"])
    n = len(frame)
    tx = frame["transaction_id"].to_numpy(np.int64)
    card = frame["card_id"].to_numpy(np.int64)
    decisions = encode_decisions(
        transaction_id=tx,
        card_id=card,
        terminal_id=frame["terminal_id"].to_numpy(np.int64),
        timestamp=ts,
        amount=frame["amount"].to_numpy(np.float64),
        score=np.zeros(n),
        action=np.zeros(n, np.int64),
        features=features,
        decided_at=ts,
        processing_ms=0.5,
        source_partition=0,
        source_offset=tx,
        model_name="fraud",
        model_version="v1",
        schema_id=schema_id_for(serde.codec("Decision")),
        feature_set_version=FEATURE_SET_VERSION,
    )
    labels = encode_labels(
        transaction_id=tx,
        card_id=card,
        is_fraud=frame["is_fraud"].to_numpy(np.int64),
        label_timestamp=ts + DELAY_DAYS * DAY_MS,
        schema_id=schema_id_for(serde.codec("Label")),
        source="simulator",
    )
    producer = make_producer(settings)
    for topic, payloads in (
        (settings.topics.decisions, decisions),
        (settings.topics.labels, labels),
    ):
        for key, payload in zip(card, payloads, strict=True):
            producer.produce(topic, payload, str(int(key)).encode())
            producer.poll(0)
    assert producer.flush(30) == 0


@pytest.fixture
def settings(kafka_bootstrap: str, topics: TopicNames, tmp_path: Path) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topics=topics,
        registry_dir=tmp_path / "models",
        label_delay_days=DELAY_DAYS,
    )


@pytest.fixture
def registry(settings: Settings, frame: pd.DataFrame, served: np.ndarray) -> ModelRegistry:
    """A registry whose champion (v1) was trained on the first ten days."""
    days = (timestamps_to_ms(frame["timestamp"]) // DAY_MS) - _day(START)
    early = days < 10
    booster = train_booster(
        served[early], frame["is_fraud"].to_numpy()[early], FEATURE_NAMES, PARAMS
    )
    registry = ModelRegistry(settings.registry_dir, "fraud")
    registry.register(
        booster,
        features=FEATURE_NAMES,
        params=PARAMS.to_dict(),
        data_range=("2018-04-01", "2018-04-10"),
        metrics={},
        feature_set_version=FEATURE_SET_VERSION,
        alias="champion",
    )
    return registry


def test_once_registers_a_challenger_with_lineage_and_announces_it(
    settings: Settings, registry: ModelRegistry, frame: pd.DataFrame
) -> None:
    cutoff = _ms(START + dt.timedelta(days=30 + DELAY_DAYS))  # every day is mature
    job = RetrainJob(settings, policy=POLICY, params=PARAMS)
    outcome = job.run(RetrainSpec("req-once", cutoff_ms=cutoff, trigger="manual"))

    assert outcome.status == "registered"
    assert outcome.counts is not None
    assert outcome.counts.labelled == len(frame)
    assert outcome.counts.frauds == int(frame["is_fraud"].sum())
    challenger = registry.get("challenger")
    assert challenger.version == 2 and registry.aliases().champion == 1
    lineage = challenger.lineage
    assert lineage["request_id"] == "req-once"
    assert lineage["trigger"] == "manual"
    assert lineage["champion_version"] == "v1"
    assert lineage["parent_version"] == 1
    assert lineage["holdout"] == {"start": "2018-04-26", "end": "2018-04-30"}
    assert lineage["data_range"] == {"start": "2018-04-16", "end": "2018-04-25"}
    assert challenger.data_range == ("2018-04-16", "2018-04-25")
    in_holdout = frame["timestamp"] >= pd.Timestamp("2018-04-26")
    assert lineage["holdout_rows"] == int(in_holdout.sum())
    assert lineage["holdout_frauds"] == int(frame.loc[in_holdout, "is_fraud"].sum())
    keys = {"auc_roc", "average_precision", "card_precision_at_100"}
    assert keys <= set(challenger.metrics)
    assert set(challenger.metrics["champion"]) == keys
    assert all(0.0 <= challenger.metrics[k] <= 1.0 for k in keys)
    assert challenger.metrics["champion_version"] == "v1"
    assert challenger.feature_set_version == FEATURE_SET_VERSION

    control = _control_records(settings)
    assert control[-1]["model_name"] == "fraud"
    assert control[-1]["champion_version"] == "v1"
    assert control[-1]["challenger_version"] == "v2"
    assert "req-once" in control[-1]["reason"]

    again = job.run(RetrainSpec("req-once", cutoff_ms=cutoff))
    assert again.status == "skipped" and again.version is not None and again.version.version == 2
    assert len(registry.list_versions()) == 2


def test_loop_serves_a_redelivered_request_once(
    settings: Settings, registry: ModelRegistry, group_id: str
) -> None:
    request = {
        "request_id": f"drift-{uuid.uuid4().hex[:8]}",
        "model_name": "fraud",
        "reason": "drift",
        "drift_event_ids": ["e1"],
        "window_start": _ms(START),
        "window_end": _ms(START + dt.timedelta(days=30)),
        "requested_at": _ms(START + dt.timedelta(days=30)),
        "requested_by": "monitor",
    }
    payload = Serde.from_settings(settings).codec("RetrainRequest").encode(request)
    producer = make_producer(settings)
    for _ in range(2):
        producer.produce(settings.topics.retrain_requests, payload, b"fraud")
    assert producer.flush(30) == 0

    job = RetrainJob(settings, policy=POLICY, params=PARAMS)
    outcomes = job.serve(group_id, max_requests=2, idle_timeout_s=30)

    assert [o.status for o in outcomes] == ["registered", "skipped"]
    versions = registry.list_versions()
    assert [v.version for v in versions] == [1, 2]
    lineage = versions[1].lineage
    assert lineage["request_id"] == request["request_id"]
    assert lineage["trigger"] == "drift"
    assert lineage["drift_event_ids"] == ["e1"]
    # labels known at requested_at: the last 7 days are not mature yet
    assert lineage["holdout"] == {"start": "2018-04-19", "end": "2018-04-23"}
    assert registry.aliases().challenger == 2 and registry.aliases().champion == 1
    # both were committed: the group has nothing left
    assert job.serve(group_id, idle_timeout_s=2) == []


def test_a_window_without_enough_labelled_data_registers_nothing(
    settings: Settings, registry: ModelRegistry
) -> None:
    spec = RetrainSpec(
        "req-short",
        start_ms=_ms(START + dt.timedelta(days=20)),
        end_ms=_ms(START + dt.timedelta(days=24)),
        cutoff_ms=_ms(START + dt.timedelta(days=40)),
    )
    with pytest.raises(NotEnoughDataError, match="need more than the 5-day holdout"):
        RetrainJob(settings, policy=POLICY, params=PARAMS).run(spec)
    assert [v.version for v in registry.list_versions()] == [1]


def test_cli_dry_run_judges_without_registering(
    settings: Settings, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FRAUD_TOPICS__DECISIONS": settings.topics.decisions,
        "FRAUD_TOPICS__LABELS": settings.topics.labels,
        "FRAUD_TOPICS__MODEL_CONTROL": settings.topics.model_control,
        "FRAUD_LABEL_DELAY_DAYS": str(DELAY_DAYS),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = ["--once", "--dry-run", "--json", "--registry", str(settings.registry_dir)]
    args += ["--holdout-days", "5", "--train-days", "10", "--n-estimators", "10"]
    args += ["--until", "2018-04-25", "--drift-start", "2018-04-18"]
    args += ["--min-post-drift-frauds", "20", "--params", '{"nthread": 1}']
    result = CliRunner().invoke(retrain, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.output
    payload = json.loads(lines[0])
    assert payload["status"] == "dry-run"
    assert payload["holdout"] == {"start": "2018-04-21", "end": "2018-04-25"}
    assert payload["post_drift"] is True
    assert payload["train"] == {"start": "2018-04-18", "end": "2018-04-20"}
    assert payload["champion_version"] == "v1"
    assert set(payload["champion_metrics"]) == set(payload["challenger_metrics"])
    assert [v.version for v in registry.list_versions()] == [1]


def _control_records(settings: Settings) -> list[dict[str, object]]:
    codec = Serde.from_settings(settings).codec("ModelControl")
    consumer = make_consumer(settings, f"control-reader-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(settings.topics.model_control, 0, OFFSET_BEGINNING)])
    records: list[dict[str, object]] = []
    deadline = time.monotonic() + 15
    try:
        while not records and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=1.0):
                if message.error() is None and message.value() is not None:
                    records.append(codec.decode(message.value()))
    finally:
        consumer.close()
    return records


def _ms(day: dt.date) -> int:
    return _day(day) * DAY_MS


def _day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days
