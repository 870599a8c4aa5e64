"""Which Kafka the integration tests use: configured, a container, or a local broker.

The order is the design's: ``KAFKA_BOOTSTRAP_SERVERS`` (or
``FRAUD_KAFKA_BOOTSTRAP_SERVERS``) if set; a testcontainers Kafka if a Docker
engine answers; else a local broker started from Maven Central jars. The
choice is a plain function of the environment and a probe, so it is tested
without any of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

BOOTSTRAP_ENV_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "FRAUD_KAFKA_BOOTSTRAP_SERVERS")


class BrokerSource(Enum):
    CONFIGURED = "configured"
    CONTAINER = "container"
    LOCAL = "local"


@dataclass(frozen=True)
class BrokerChoice:
    """The chosen source, its bootstrap servers when already known, and why."""

    source: BrokerSource
    reason: str
    bootstrap_servers: str | None = None


def choose_broker(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> BrokerChoice:
    """Pick the broker source; ``docker_answers`` is called only when needed."""
    for name in BOOTSTRAP_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return BrokerChoice(BrokerSource.CONFIGURED, f"{name} is set", value)
    if docker_answers():
        return BrokerChoice(BrokerSource.CONTAINER, "a Docker engine answers")
    return BrokerChoice(BrokerSource.LOCAL, "no bootstrap servers configured and no Docker engine")


def docker_engine_answers(env: Mapping[str, str] | None = None, timeout_s: float = 3.0) -> bool:
    """True if a Docker engine answers a ping; quick False when there is no socket at all."""
    env = os.environ if env is None else env
    docker_host = env.get("DOCKER_HOST", "")
    if not docker_host and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker  # the testcontainers dependency

        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "no Docker"
        return False
