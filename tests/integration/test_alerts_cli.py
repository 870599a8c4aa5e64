"""`fraud alerts` against a real broker: prints the alerts on a topic and exits when caught up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.kafka import make_producer
from pipeline.serde import Serde
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

RUN_CLI = (
    "import sys; from pipeline.cli import COMMANDS, main; "
    "COMMANDS.setdefault('alerts', ('pipeline.cli.alerts', 'alerts', '')); "
    "main(sys.argv[1:])"
)


def alert(card: int, score: float, action: str) -> dict[str, Any]:
    return {
        "transaction_id": 9_000 + card,
        "card_id": card,
        "terminal_id": 77,
        "timestamp": 1_533_081_600_000 + card * 1000,  # 2018-08-01 00:00 UTC
        "amount": 250.0 + card,
        "score": score,
        "action": action,
        "severity": "HIGH",
        "model_name": "fraud-xgb",
        "model_version": "4",
        "reasons": [
            {"feature": "amount", "contribution": 1.75, "text": "amount far above the card's mean"},
            {"feature": "card_count_1d", "contribution": 0.4, "text": ""},
        ],
        "decided_at": 1_700_000_000_000,
    }


def run_alerts(settings: Settings, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FRAUD_TOPICS__ALERTS": topic,
    }
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_alerts_prints_what_is_there_and_exits(
    kafka_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("alerts", partitions=2)
    codec = Serde.local().codec("Alert")
    producer = make_producer(kafka_settings)
    records = [alert(11, 0.97, "DECLINE"), alert(12, 0.61, "REVIEW"), alert(13, 0.93, "DECLINE")]
    for record in records:
        producer.produce(topic, codec.encode(record), str(record["card_id"]).encode())
    producer.produce(topic, b"not an alert", b"0")
    assert producer.flush(10) == 0

    table = run_alerts(kafka_settings, topic)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 3
    line = next(text for text in lines if "card 11 " in text)
    assert "2018-08-01 00:00:11" in line and "261.00" in line and "0.970" in line
    assert "DECLINE" in line and "amount +1.75 (amount far above the card's mean)" in line
    assert "skipped undecodable message" in table.stderr

    as_json = run_alerts(kafka_settings, topic, "--json", "--limit", "2")
    assert as_json.returncode == 0, as_json.stderr
    decoded = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert len(decoded) == 2
    assert {d["card_id"] for d in decoded} <= {11, 12, 13}
    assert all(d["model_version"] == "4" for d in decoded)


def test_alerts_on_a_missing_topic_is_a_one_line_error(kafka_settings: Settings) -> None:
    run = run_alerts(kafka_settings, "no-such-alerts-topic")
    assert run.returncode == 1
    assert "no-such-alerts-topic does not exist" in run.stderr and "Traceback" not in run.stderr
