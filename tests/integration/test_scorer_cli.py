"""``fraud score`` as users run it: a subprocess configured by flags and FRAUD_* variables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from scorer_helpers import (
    day_index,
    decode_decisions,
    env_for,
    read_all,
    register,
    scorer_settings,
    scorer_topics,
    simulated,
    train_on,
)

from pipeline.registry import ModelRegistry
from pipeline.replay import replay
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration

RUN_CLI = "import sys; from pipeline.cli import main; main(sys.argv[1:])"
SUMMARY = re.compile(
    r"decided (\d+), alerts (\d+), dead-lettered (\d+), model swaps (\d+), refusals (\d+) in "
)


def fraud(
    settings: Settings, *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, *args],
        env={**os.environ, **env_for(settings)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_fraud_score_decides_and_prints_its_summary(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    topics = scorer_topics(topic_factory)
    settings = scorer_settings(kafka_bootstrap, topics, tmp_path / "models")
    frame = simulated(days=10, seed=5)
    days = day_index(frame)
    register(
        ModelRegistry(settings.registry_dir), train_on(frame, days < 7), frame, alias="champion"
    )
    stream = frame[days >= 7].iloc[:400]
    assert replay(settings, stream).ok
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.transactions, b"\x07garbage", b"1")
    producer.produce(topics.transactions, b'{"transaction_id": 1}', b"2")
    assert producer.flush(10) == 0
    total = len(stream) + 2

    result = fraud(
        settings,
        "score",
        "--group",
        group_id,
        "--max-events",
        str(total),
        "--idle-timeout",
        "20",
        "--metrics-port",
        "0",
        "--batch-size",
        "150",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"metrics on http://127\.0\.0\.1:\d+/metrics", result.stderr)
    found = SUMMARY.search(result.stderr)
    assert found, result.stderr[-2000:]
    decided, alerts, dead, swaps, refusals = map(int, found.groups())
    assert (decided, dead, swaps, refusals) == (len(stream), 2, 0, 0)
    assert "Traceback" not in result.stderr

    decisions = decode_decisions(read_all(settings, topics.decisions))
    assert sorted(decisions["transaction_id"]) == sorted(stream["transaction_id"])
    assert len(read_all(settings, topics.dlq)) == 2
    flagged = decisions["action"].isin(["REVIEW", "DECLINE"]).sum()
    assert alerts == flagged
    assert len(read_all(settings, topics.alerts)) == alerts


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--batch-size", "0"], 2, "--batch-size"),  # a bad argument: usage error
        (["--model", "v9", "--no-metrics"], 1, "v9"),  # an expected failure: no such model
    ],
)
def test_fraud_score_errors_are_one_line(
    kafka_bootstrap: str, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap, registry_dir=tmp_path / "empty-registry"
    )
    result = fraud(settings, "score", *args)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
