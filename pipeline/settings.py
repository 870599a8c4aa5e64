"""One frozen settings object, read from flags and ``FRAUD_*`` environment variables.

This is the only module that reads the environment. Everything else receives a
:class:`Settings` instance. Nested groups use ``__`` in variable names, e.g.
``FRAUD_TOPICS__DECISIONS=my-decisions``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class TopicNames(BaseModel):
    """Names of every topic in the design (defaults are the contract's)."""

    model_config = ConfigDict(frozen=True)

    transactions: str = "transactions"
    decisions: str = "decisions"
    alerts: str = "fraud-alerts"
    labels: str = "labels"
    dlq: str = "transactions.dlq"
    model_control: str = "model-control"
    retrain_requests: str = "retrain-requests"
    drift_events: str = "drift-events"
    outcomes: str = "outcomes"
    monitor_stats: str = "monitor-stats"
    terminal_features: str = "terminal-features"
    card_state_changelog: str = "card-state-changelog"


class PolicySettings(BaseModel):
    """Score thresholds of the decision policy."""

    model_config = ConfigDict(frozen=True)

    review_threshold: float = Field(0.5, ge=0.0, le=1.0)
    decline_threshold: float = Field(0.9, ge=0.0, le=1.0)
    max_reasons: int = Field(3, ge=1, le=20)


class Settings(BaseSettings):
    """Every knob of the pipeline, in one place.

    Values come, in increasing priority, from defaults, ``FRAUD_*`` environment
    variables (``KAFKA_BOOTSTRAP_SERVERS`` is honoured too) and explicit
    keyword arguments (the CLI passes its flags this way).
    """

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
    )

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "kafka_bootstrap_servers",
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        description="Comma-separated bootstrap servers of the cluster.",
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka properties (JSON object), e.g. security.protocol, sasl.mechanism.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="sasl.password, kept out of logs and reprs."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="ssl.key.password, kept out of logs and reprs."
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent Schema Registry URL; unset means the local schema id table."
    )
    schema_registry_config: dict[str, str] = Field(
        default_factory=dict, description="Extra Schema Registry client properties (JSON object)."
    )
    partitions: int = Field(6, ge=1, le=1000, description="Partitions of the high-volume topics.")
    replication_factor: int = Field(1, ge=1, le=10)
    topics: TopicNames = Field(default_factory=lambda: TopicNames())

    # --- local broker ------------------------------------------------------
    cache_dir: Path = Field(
        Path.home() / ".cache" / "fraud-pipeline",
        description="Where Kafka jars and local broker data live (outside the work tree).",
    )
    local_kafka_port: int = Field(9092, ge=1024, le=65535, description="First broker port.")

    # --- models ------------------------------------------------------------
    registry_dir: Path = Field(REPO_ROOT / "models", description="Model registry directory.")
    schemas_dir: Path = Field(REPO_ROOT / "schemas", description="Avro schemas directory.")
    label_delay_days: int = Field(7, ge=0, le=365, description="Days until a label is known.")
    policy: PolicySettings = Field(default_factory=lambda: PolicySettings())

    # --- observability -----------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("kafka_config", "schema_registry_config", mode="before")
    @classmethod
    def _parse_json_dict(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON object, got {value!r}") from exc
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
            return {str(k): str(v) for k, v in parsed.items()}
        return value

    def librdkafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration dict for a client of this cluster.

        Secrets are revealed only here, at the moment a client is built.
        """
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        config.update(self.kafka_config)
        if self.kafka_sasl_password is not None:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        config.update(overrides)
        return config

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe view for logs: secrets masked, also inside ``kafka_config``."""
        data = self.model_dump(mode="json")
        for key in list(data.get("kafka_config", {})):
            if any(word in key.lower() for word in ("password", "secret", "token", "key")):
                data["kafka_config"][key] = "**********"
        for key in list(data.get("schema_registry_config", {})):
            if any(word in key.lower() for word in ("password", "secret", "token", "user.info")):
                data["schema_registry_config"][key] = "**********"
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit overrides (``None`` values ignored)."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValueError as exc:  # pydantic.ValidationError derives from ValueError
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(exc)
        raise ConfigError(f"invalid settings: {detail}") from exc
