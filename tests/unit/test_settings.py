"""Settings: environment, overrides, secrets."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings


def test_defaults_match_the_topic_contract() -> None:
    settings = Settings()
    assert settings.topics.transactions == "transactions"
    assert settings.topics.alerts == "fraud-alerts"
    assert settings.topics.dlq == "transactions.dlq"
    assert settings.topics.model_control == "model-control"


def test_env_prefix_and_nested_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    monkeypatch.setenv("FRAUD_TOPICS__DECISIONS", "my-decisions")
    monkeypatch.setenv("FRAUD_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "10.0.0.1:9092"
    assert settings.topics.decisions == "my-decisions"
    assert settings.topics.transactions == "transactions"
    assert settings.partitions == 12


def test_plain_kafka_bootstrap_servers_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    assert Settings().kafka_bootstrap_servers == "127.0.0.1:19092"


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_PARTITIONS", "12")
    assert load_settings(partitions=3, registry_dir=None).partitions == 3


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.partitions = 4  # type: ignore[misc]


def test_librdkafka_passthrough_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FRAUD_KAFKA_CONFIG",
        '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u"}',
    )
    monkeypatch.setenv("FRAUD_KAFKA_SASL_PASSWORD", "hunter2")
    settings = Settings()
    config = settings.librdkafka_config(**{"group.id": "g"})
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == "hunter2"
    assert config["group.id"] == "g"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.redacted())


def test_secret_like_passthrough_keys_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_KAFKA_CONFIG", '{"ssl.key.password": "s3cret"}')
    assert "s3cret" not in str(Settings().redacted())


def test_invalid_values_give_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_KAFKA_CONFIG", "not json")
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings()
    monkeypatch.delenv("FRAUD_KAFKA_CONFIG")
    with pytest.raises(ConfigError):
        load_settings(partitions=0)
