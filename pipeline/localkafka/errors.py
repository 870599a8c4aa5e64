"""Errors of the local Kafka launcher; each message names the fix."""

from __future__ import annotations

from pipeline.errors import FraudError


class LocalKafkaError(FraudError):
    """The local Apache Kafka could not be prepared, started or stopped."""


class JavaNotFoundError(LocalKafkaError):
    """No usable Java (17 or newer) on the PATH."""


class MavenNotFoundError(LocalKafkaError):
    """``mvn`` is not on the PATH, so the Kafka jars cannot be resolved."""


class JarResolutionError(LocalKafkaError):
    """Maven could not download the Kafka jars (usually: Maven Central unreachable)."""


class PortInUseError(LocalKafkaError):
    """A port the cluster needs is already taken by another process."""


class ClusterStartError(LocalKafkaError):
    """A broker process died or the cluster did not answer in time."""


class ClusterLayoutError(LocalKafkaError):
    """The on-disk cluster was formatted for a different layout than requested."""
