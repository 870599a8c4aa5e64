"""``fraud alerts``: a human-readable tail of the alerts topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pipeline.errors import FraudError

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from pipeline.settings import Settings

POLL_BATCH = 500
POLL_TIMEOUT_S = 0.5


class AlertsError(FraudError):
    """The alerts topic cannot be read."""


def format_alert(record: Mapping[str, Any], max_reasons: int = 3) -> str:
    """One line per alert: time, card, amount, score, action, top reasons."""
    when = datetime.fromtimestamp(record["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    reasons = record.get("reasons") or []
    texts = record.get("reason_texts") or []
    shown = []
    for index, reason in enumerate(reasons[:max_reasons]):
        text = (reason.get("text") or (texts[index] if index < len(texts) else "")).strip()
        part = f"{reason['feature']} {reason['contribution']:+.2f}"
        shown.append(f"{part} ({text})" if text else part)
    if not shown and texts:
        shown = list(texts[:max_reasons])
    return (
        f"{when}  card {record['card_id']:<8} amount {record['amount']:>10,.2f}  "
        f"score {record['score']:.3f}  {record['action']:<7} {record.get('severity', ''):<8}  "
        f"tx {record['transaction_id']}  model {record['model_name']}:{record['model_version']}"
        + (f"  reasons: {'; '.join(shown)}" if shown else "")
    )


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new alerts until Ctrl-C (otherwise exit when caught up).",
)
@click.option(
    "--from-beginning",
    is_flag=True,
    help="With --follow, print the alerts already on the topic first.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N alerts.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per alert instead of a table line."
)
def alerts(follow: bool, from_beginning: bool, limit: int | None, as_json: bool) -> None:
    """Print the fraud alerts (review and decline decisions) as they land.

    Reads the alerts topic (FRAUD_TOPICS__ALERTS, default fraud-alerts) with a
    read_committed consumer that commits nothing, so it never disturbs other
    readers. Without --follow it prints every alert on the topic and exits once
    it has reached the end of every partition; with --follow it prints new
    alerts (and, with --from-beginning, the old ones first) until Ctrl-C.

    \b
    Examples:
      fraud alerts                       # what is there now
      fraud alerts --follow              # live tail
      fraud alerts --limit 20 --json | jq .score
    """
    from confluent_kafka import KafkaError

    from pipeline.serde import DecodeError, Serde
    from pipeline.settings import load_settings

    settings = load_settings()
    topic = settings.topics.alerts
    codec = Serde.from_settings(settings).codec("Alert")
    consumer = _assigned_consumer(settings, topic, at_start=from_beginning or not follow)
    printed = 0
    at_end: set[int] = set()
    partitions = consumer.assignment()
    try:
        while limit is None or printed < limit:
            messages = consumer.consume(POLL_BATCH, POLL_TIMEOUT_S)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                        continue
                    raise AlertsError(f"reading {topic} failed: {error.str()}")
                at_end.discard(message.partition())
                try:
                    record = codec.decode(message.value() or b"")
                except DecodeError as exc:
                    click.echo(
                        f"skipped undecodable message at {topic}[{message.partition()}]"
                        f"@{message.offset()}: {exc}",
                        err=True,
                    )
                    continue
                click.echo(json.dumps(record) if as_json else format_alert(record))
                printed += 1
                if limit is not None and printed >= limit:
                    break
            if not follow and len(at_end) >= len(partitions):
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    click.echo(f"{printed} alert{'s' if printed != 1 else ''} from {topic}", err=True)


def _assigned_consumer(settings: Settings, topic: str, *, at_start: bool) -> Consumer:
    """A consumer assigned every partition of ``topic`` (no group join, no commits)."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

    from pipeline.kafka import make_consumer

    consumer = make_consumer(
        settings,
        f"fraud-alerts-tail-{uuid.uuid4().hex[:12]}",
        **{
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        },
    )
    try:
        metadata = consumer.list_topics(topic, timeout=15)
    except KafkaException as exc:
        consumer.close()
        raise AlertsError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not answer within 15 s; "
            "start one with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        consumer.close()
        raise AlertsError(f"topic {topic} does not exist; run `fraud topics create`")
    offset = OFFSET_BEGINNING if at_start else OFFSET_END
    consumer.assign([TopicPartition(topic, p, offset) for p in sorted(found.partitions)])
    return consumer
