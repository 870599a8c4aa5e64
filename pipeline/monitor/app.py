"""The monitor as a faust-streaming app, built by :func:`create_app`.

Agents only decode, call :class:`MonitorEngine` and publish. Values travel as
raw bytes and are decoded with :mod:`pipeline.serde`; a record that cannot be
decoded or used goes to the dead-letter topic with its original bytes and the
reason in headers, and is counted, never fatal. Every agent runs with
concurrency 1 (faust-streaming may skip messages at higher concurrency).

The monitor keeps its state in memory and expects to be the only instance in
its group: it merges every worker's statistics and de-duplicates outcomes, so it
must see every partition.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust

from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.engine import DRIFT, OUTCOMES, STATS, MonitorEngine
from pipeline.monitor.errors import InvalidRecord
from pipeline.monitor.lineage import TrainingRangeLookup
from pipeline.monitor.metrics import MonitorMetrics
from pipeline.serde import DecodeError, EncodeError, Serde, dlq_headers
from pipeline.settings import Settings

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
DEFAULT_APP_ID = "fraud-monitor"


@dataclass
class MonitorApp:
    """The faust app with the engine it drives (tests and the CLI read its metrics)."""

    app: faust.App
    engine: MonitorEngine
    worker_id: str


def now_ms() -> int:
    """Wall time, epoch ms (only for ``detected_at`` / ``requested_at``)."""
    return int(time.time() * 1000)


def create_app(
    settings: Settings,
    config: MonitorConfig | None = None,
    *,
    metrics: MonitorMetrics | None = None,
    app_id: str = DEFAULT_APP_ID,
    worker_id: str | None = None,
    training_ranges: TrainingRangeLookup | None = None,
) -> MonitorApp:
    """Build the monitor app: one agent per input stream, on the topics of ``settings``.

    ``training_ranges`` tells each model version's training data range (the CLI
    reads it from the registry), so in-sample outcomes stay out of the error
    detector.
    """
    engine = MonitorEngine(config, metrics, training_ranges)
    serde = Serde.from_settings(settings)
    worker = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    topics = settings.topics
    app = faust.App(
        app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        producer_compression_type="lz4",
        autodiscover=False,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes)

    stats_in, outcomes_in = topic(topics.monitor_stats), topic(topics.outcomes)
    drift_topic, requests_out = topic(topics.drift_events), topic(topics.retrain_requests)
    dlq = topic(topics.dlq)
    stats_codec, outcome_codec = serde.codec("MonitorStats"), serde.codec("Outcome")
    drift_codec, request_codec = serde.codec("DriftEvent"), serde.codec("RetrainRequest")

    async def dead_letter(stream: str, message: Any, reason: str, detail: str) -> None:
        engine.reject(stream, reason)
        log.warning("dead-lettered %s record at offset %s: %s", stream, message.offset, detail)
        headers = dlq_headers(
            reason,
            detail,
            stage=f"monitor.{stream}",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            failed_at_ms=now_ms(),
            worker=worker,
            source_timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        )
        await dlq.send(key=message.key, value=message.value or b"", headers=headers)

    async def consume(
        stream: faust.StreamT[Any],
        name: str,
        decode: Callable[[bytes], dict[str, Any]],
        handle: Callable[[Mapping[str, Any], int], list[tuple[bytes, bytes, faust.TopicT]]],
    ) -> AsyncIterator[None]:
        async for event in stream.events():
            message = event.message
            try:
                record = decode(message.value or b"")
            except DecodeError as exc:
                engine.metrics.records_in.labels(name).inc()
                await dead_letter(name, message, exc.reason, exc.message)
                yield None
                continue
            try:
                outputs = handle(record, now_ms())
            except InvalidRecord as exc:
                await dead_letter(name, message, exc.reason, exc.message)
            except (EncodeError, Exception) as exc:  # a bug must not stop the monitor
                log.exception("%s record at offset %s failed", name, message.offset)
                await dead_letter(name, message, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            else:
                for key, value, target in outputs:
                    await target.send(key=key, value=value)
            yield None

    def to_drift(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes, faust.TopicT]]:
        return [
            (e["model_name"].encode(), value, drift_topic)
            for e, value in zip(events, drift_codec.encode_batch(events), strict=True)
        ]

    def handle_stats(record: Mapping[str, Any], now: int) -> list[tuple[bytes, bytes, Any]]:
        return to_drift(engine.on_stats(record, now))

    def handle_outcome(record: Mapping[str, Any], now: int) -> list[tuple[bytes, bytes, Any]]:
        return to_drift(engine.on_outcome(record, now))

    def handle_drift(record: Mapping[str, Any], now: int) -> list[tuple[bytes, bytes, Any]]:
        request = engine.on_drift_event(record, now)
        if request is None:
            return []
        return [(request["model_name"].encode(), request_codec.encode(request), requests_out)]

    @app.agent(stats_in, concurrency=1, name="monitor-stats")
    async def stats_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for _ in consume(stream, STATS, stats_codec.decode, handle_stats):
            yield None

    @app.agent(outcomes_in, concurrency=1, name="outcomes")
    async def outcomes_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for _ in consume(stream, OUTCOMES, outcome_codec.decode, handle_outcome):
            yield None

    @app.agent(drift_topic, concurrency=1, name="retrain-trigger")
    async def drift_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for _ in consume(stream, DRIFT, drift_codec.decode, handle_drift):
            yield None

    return MonitorApp(app=app, engine=engine, worker_id=worker)
