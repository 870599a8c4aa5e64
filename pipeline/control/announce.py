"""Publish the registry's alias state to the compacted model-control topic."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException

from pipeline.errors import FraudError
from pipeline.kafka import make_producer
from pipeline.registry import AliasState
from pipeline.registry.refs import version_label
from pipeline.serde import Serde
from pipeline.settings import Settings


class ControlAnnounceError(FraudError):
    """The new state could not be written to the model-control topic."""


def control_record(name: str, state: AliasState, reason: str = "") -> dict[str, Any]:
    """The ModelControl record for a registry state.

    ``generation`` is the announcement time in ms: later announcements win, and
    a scorer ignores a record older than the last it applied.
    """
    if state.champion is None:
        raise ControlAnnounceError(f"model {name!r} has no champion to announce")
    now = int(time.time() * 1000)
    return {
        "model_name": name,
        "champion_version": version_label(state.champion),
        "challenger_version": (
            version_label(state.challenger) if state.challenger is not None else None
        ),
        "rollout_mode": "NONE",
        "traffic_share": 0.0,
        "generation": now,
        "updated_at": now,
        "reason": reason,
    }


def announce(
    settings: Settings, name: str, state: AliasState, reason: str = "", timeout_s: float = 15.0
) -> dict[str, Any]:
    """Write the state, keyed by model name, and wait for the broker's ack."""
    record = control_record(name, state, reason)
    payload = Serde.from_settings(settings).codec("ModelControl").encode(record)
    producer = make_producer(settings, **{"linger.ms": 0})
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    try:
        producer.produce(
            settings.topics.model_control, payload, name.encode(), on_delivery=delivered
        )
        remaining = producer.flush(timeout_s)
    except KafkaException as exc:
        raise ControlAnnounceError(
            f"cannot announce on {settings.topics.model_control}: {exc}"
        ) from exc
    if remaining or failures:
        detail = failures[0] if failures else f"no broker answered within {timeout_s:.0f}s"
        raise ControlAnnounceError(
            f"registry updated, but announcing on {settings.topics.model_control} failed "
            f"({detail}); scorers keep the old model until they restart"
        )
    return record
