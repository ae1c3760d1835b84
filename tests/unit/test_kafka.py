"""Kafka connection settings: SASL completeness and the aiokafka arguments they become."""

import pytest
from pydantic import SecretStr, ValidationError

from spendpipe.platform.kafka import KafkaSettings


def test_sasl_ssl_without_credentials_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as raised:
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN")

    assert "security_protocol SASL_SSL needs sasl_username, sasl_password" in str(raised.value)


def test_sasl_without_anything_names_all_three_fields() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism, sasl_username, sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")


def test_plaintext_needs_no_credentials() -> None:
    settings = KafkaSettings(bootstrap_servers="a:9092,b:9093")

    assert settings.servers == ["a:9092", "b:9093"]
    assert settings.security() is None
    assert settings.aiokafka_kwargs() == {"bootstrap_servers": ["a:9092", "b:9093"], "client_id": "spendpipe"}


@pytest.mark.parametrize("servers", ["bad host:9092", "kafka", "kafka:port", "a:1,,b:2", ""])
def test_bootstrap_servers_must_be_host_port_pairs(servers: str) -> None:
    with pytest.raises(ValidationError, match="bootstrap_servers"):
        KafkaSettings(bootstrap_servers=servers)


def test_sasl_plain_aiokafka_arguments() -> None:
    settings = KafkaSettings(
        bootstrap_servers="kafka:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="gateway",
        sasl_password=SecretStr("secret"),
    )

    kwargs = settings.aiokafka_kwargs()

    assert kwargs["bootstrap_servers"] == ["kafka:9092"]
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert kwargs["sasl_plain_username"] == "gateway"
    assert kwargs["sasl_plain_password"] == "secret"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_mechanism_is_passed_through(mechanism: str) -> None:
    settings = KafkaSettings.model_validate(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_username": "gateway",
            "sasl_password": "secret",
        }
    )

    kwargs = settings.aiokafka_kwargs()

    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"


def test_password_is_not_shown() -> None:
    settings = KafkaSettings.model_validate(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password": "pw-123",
        }
    )

    assert "pw-123" not in repr(settings)
    assert "pw-123" not in settings.model_dump_json()
