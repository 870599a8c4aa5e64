"""Replay a transactions frame into Kafka, as fast as possible or paced by event time.

Transactions go to ``settings.topics.transactions`` and, with ``labels``, one
Label per transaction to ``settings.topics.labels`` when it becomes known
(transaction time + label delay), merged in event-time order. Keys are the card
id, so a card's events stay in order on one partition. Each message's Kafka
timestamp is the wall time it was produced (the producer's default), so a
consumer can measure end-to-end latency; the event time travels in the record.

Events are encoded a chunk at a time (vectorized) and handed to one
librdkafka producer (lz4, 5 ms linger, large batches). Only failed deliveries
call back into Python.
"""

from __future__ import annotations

import operator
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from confluent_kafka import KafkaError, KafkaException, Producer
from tqdm import tqdm

from pipeline.kafka import make_producer
from pipeline.replay.errors import ReplayError
from pipeline.replay.events import MS_PER_DAY, EventKind, EventPlan, plan_events
from pipeline.replay.pacing import Pacer, wait_until_due
from pipeline.replay.payloads import PayloadEncoder, PayloadFormat, ReplayColumns, card_keys
from pipeline.replay.summary import ReplaySummary
from pipeline.serde import Serde
from pipeline.settings import Settings

CHUNK = 20_000
"""Events encoded at once: large enough to amortize numpy, small enough to start fast."""

PRODUCER_CONFIG: dict[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "delivery.report.only.error": True,
}

T = TypeVar("T")


class DeliveryErrors:
    """Delivery callback that counts failures and keeps the first message."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        self.count += 1
        if self.first is None:
            self.first = f"{message.topic()}: {error.str()}"


def replay(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    speed: float | None = None,
    fmt: PayloadFormat = "avro",
    labels: bool = False,
    label_delay_days: float | None = None,
    progress: bool = False,
    producer_config: Mapping[str, Any] | None = None,
    flush_timeout_s: float = 60.0,
    serde: Serde | None = None,
) -> ReplaySummary:
    """Send ``frame`` (the canonical transactions frame) to Kafka; returns the summary.

    ``speed=None`` sends as fast as the broker takes it; ``speed=X`` replays X
    times faster than real time. ``label_delay_days`` defaults to
    ``settings.label_delay_days``. Never raises for failed deliveries: they are
    counted in the summary.
    """
    delay_days = settings.label_delay_days if label_delay_days is None else label_delay_days
    if delay_days < 0:
        raise ReplayError(f"label delay must be >= 0 days, got {delay_days}")
    delay_ms = round(delay_days * MS_PER_DAY)
    if labels and "is_fraud" not in frame.columns:
        raise ReplayError("--labels needs an is_fraud column in the data")
    encoder = PayloadEncoder(serde or Serde.from_settings(settings), fmt)
    columns = ReplayColumns.from_frame(frame)
    plan = plan_events(columns.timestamp_ms, labels=labels, label_delay_ms=delay_ms)
    topics = (settings.topics.transactions, settings.topics.labels)
    errors = DeliveryErrors()
    producer = make_producer(
        settings, **{**PRODUCER_CONFIG, "on_delivery": errors, **(producer_config or {})}
    )
    _check_topics(producer, settings, topics[: 2 if labels else 1])

    pacer = None
    started = time.monotonic()
    if speed is not None and len(plan):
        pacer = Pacer(speed, int(plan.time_ms[0]), started)
    bar = tqdm(total=len(plan), unit="ev", unit_scale=True, disable=not progress, file=sys.stderr)
    try:
        for begin in range(0, len(plan), CHUNK):
            stop = min(begin + CHUNK, len(plan))
            messages = _chunk_messages(plan, begin, stop, columns, encoder, topics, delay_ms)
            times = plan.time_ms[begin:stop]
            if pacer is None:
                _produce_all(producer, messages, 0, len(times))
                bar.update(len(times))
            else:
                _produce_paced(producer, messages, times, pacer, bar)
        undelivered = producer.flush(flush_timeout_s)
    except KeyboardInterrupt:
        producer.flush(5.0)
        raise
    finally:
        bar.close()
    seconds = time.monotonic() - started
    failed = errors.count + undelivered
    first = errors.first
    if undelivered and first is None:
        first = f"{undelivered} messages still queued after {flush_timeout_s:.0f} s"
    return ReplaySummary(plan.transactions, plan.labels, seconds, failed, first)


Messages = tuple[list[str], list[bytes], list[bytes]]
"""Topics, keys and values of a chunk, in sending order."""


def _chunk_messages(
    plan: EventPlan,
    begin: int,
    stop: int,
    columns: ReplayColumns,
    encoder: PayloadEncoder,
    topics: tuple[str, str],
    delay_ms: int,
) -> Messages:
    kinds = plan.kind[begin:stop]
    rows = plan.row[begin:stop]
    is_label = kinds == EventKind.LABEL
    values = encoder.transactions(columns, rows[~is_label])
    position = np.cumsum(~is_label) - 1  # index among this chunk's transactions
    if is_label.any():
        label_values = encoder.labels(columns, rows[is_label], delay_ms)
        position = np.where(is_label, len(values) + np.cumsum(is_label) - 1, position)
        values = _pick(values + label_values, position)
        chunk_topics = [topics[kind] for kind in kinds.tolist()]
    else:
        chunk_topics = [topics[0]] * len(rows)
    return chunk_topics, card_keys(columns.card_id[rows]), values


def _pick(items: Sequence[T], positions: npt.NDArray[np.int64]) -> list[T]:
    if len(positions) == 1:
        return [items[int(positions[0])]]
    return list(operator.itemgetter(*positions.tolist())(items)) if len(positions) else []


def _produce_all(producer: Producer, messages: Messages, begin: int, stop: int) -> None:
    """Produce messages ``begin:stop``; waits for queue space when the queue is full."""
    produce = producer.produce
    topics, keys, values = messages
    for index in range(begin, stop):
        while True:
            try:
                produce(topics[index], values[index], keys[index])
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)


def _produce_paced(
    producer: Producer,
    messages: Messages,
    times: npt.NDArray[np.int64],
    pacer: Pacer,
    bar: tqdm[Any],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    done = 0
    while done < len(times):
        wait_until_due(pacer, int(times[done]), clock, producer.poll)
        due = max(pacer.due_count(times, clock()), done + 1)
        _produce_all(producer, messages, done, due)
        bar.update(due - done)
        done = due


def _check_topics(
    producer: Producer, settings: Settings, names: Sequence[str], settle_s: float = 3.0
) -> None:
    """Fail fast on a missing topic (librdkafka would retry for minutes).

    A topic created a moment ago may be missing from the first metadata
    answers, so a missing one is looked up again for ``settle_s``.
    """
    deadline = time.monotonic() + settle_s
    while True:
        try:
            metadata = producer.list_topics(timeout=15)
        except KafkaException as exc:
            raise ReplayError(
                f"Kafka at {settings.kafka_bootstrap_servers} did not answer within 15 s; "
                "start one with `fraud kafka up` or set FRAUD_KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        missing = [name for name in names if name not in metadata.topics]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise ReplayError(
                f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} do"
                f"{'' if len(missing) > 1 else 'es'} not exist; run `fraud topics create`"
            )
        time.sleep(0.2)
