"""The integration-test broker is chosen as the design says: env, Docker, local."""

from __future__ import annotations

import pytest

from pipeline.localkafka.selection import (
    BrokerSource,
    choose_broker,
    docker_engine_answers,
)


class DockerProbe:
    """A fake Docker probe that records whether it was asked."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answers


@pytest.mark.parametrize("variable", ["KAFKA_BOOTSTRAP_SERVERS", "FRAUD_KAFKA_BOOTSTRAP_SERVERS"])
def test_configured_servers_win_without_probing_docker(variable: str) -> None:
    probe = DockerProbe(answers=True)
    choice = choose_broker({variable: " broker-1:9092,broker-2:9092 "}, probe)
    assert choice.source is BrokerSource.CONFIGURED
    assert choice.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert variable in choice.reason
    assert probe.calls == 0


def test_plain_variable_takes_precedence_over_prefixed_one() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "a:1", "FRAUD_KAFKA_BOOTSTRAP_SERVERS": "b:2"}
    assert choose_broker(env, DockerProbe(False)).bootstrap_servers == "a:1"


def test_blank_variable_counts_as_unset() -> None:
    choice = choose_broker({"KAFKA_BOOTSTRAP_SERVERS": "  "}, DockerProbe(answers=True))
    assert choice.source is BrokerSource.CONTAINER
    assert choice.bootstrap_servers is None


def test_container_when_docker_answers() -> None:
    probe = DockerProbe(answers=True)
    assert choose_broker({}, probe).source is BrokerSource.CONTAINER
    assert probe.calls == 1


def test_local_broker_when_nothing_else() -> None:
    choice = choose_broker({"CI": "true"}, DockerProbe(answers=False))
    assert choice.source is BrokerSource.LOCAL
    assert "no Docker" in choice.reason


def test_docker_probe_is_false_fast_without_socket_or_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.path.exists", lambda path: False)
    assert docker_engine_answers(env={}) is False


def test_docker_probe_is_false_when_engine_unreachable() -> None:
    assert docker_engine_answers(env={"DOCKER_HOST": "tcp://127.0.0.1:1"}, timeout_s=1) is False
