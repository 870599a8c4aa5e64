"""A JSON transaction produced with kcat is read back by the project's consumer and serde."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest

from pipeline.kafka import make_consumer
from pipeline.serde import Serde
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

TRANSACTION = {
    "transaction_id": 4242,
    "timestamp": "2018-08-08T10:15:00Z",
    "card_id": 17,
    "terminal_id": 905,
    "amount": 57.16,
}


def test_kcat_json_transaction_is_consumed(
    kafka_settings: Settings, topic_factory: Callable[..., str], group_id: str
) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is not installed: `apt-get install -y kcat`", pytrace=False)
    topic = topic_factory(prefix="kcat")
    payload = json.dumps(TRANSACTION)
    subprocess.run(
        [kcat, "-P", "-b", kafka_settings.kafka_bootstrap_servers, "-t", topic, "-k", "17"],
        input=payload.encode(),
        check=True,
        timeout=30,
        capture_output=True,
    )

    consumer = make_consumer(kafka_settings, group_id)
    consumer.subscribe([topic])
    try:
        messages = []
        for _ in range(40):
            messages = consumer.consume(num_messages=1, timeout=0.5)
            if messages:
                break
    finally:
        consumer.close()

    assert len(messages) == 1
    message = messages[0]
    assert message.error() is None
    assert message.key() == b"17"
    assert json.loads(message.value()) == TRANSACTION

    record = Serde.local().transactions().decode(message.value())
    assert record["transaction_id"] == 4242
    assert record["card_id"] == 17
    assert record["terminal_id"] == 905
    assert record["amount"] == pytest.approx(57.16)
    assert record["timestamp"] == 1533723300000  # 2018-08-08T10:15:00Z in epoch ms
    assert record["currency"] == "EUR"  # schema default for a field JSON left out
