"""SASL and TLS settings reach every Kafka client spendpipe builds: the services' FastStream
broker (its producer, admin client and consumers), the compacted-topic readers, the gateway's
producer and decisions reader, topic creation and the budget admin. Each client class is
replaced by a recorder of the arguments it is built with; nothing connects."""

import asyncio
import ssl
from pathlib import Path
from typing import Any, ClassVar

import aiokafka
import aiokafka.admin.client
import pytest

from spendpipe.admin import budget_admin
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.recording import publisher
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform import compacted, kafka_topics
from spendpipe.platform import kafka as platform_kafka
from spendpipe.platform.compacted import CompactedTopicReader
from spendpipe.platform.kafka import KafkaSettings, build_broker
from tests.support.waiting import eventually_sync

SECURE = [
    {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
    {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"},
    {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
    {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"},
    {"security_protocol": "SSL"},
]


class Recorder:
    """Stands in for an aiokafka client class: keeps the keyword arguments of every instance."""

    built: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    kind = "client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Recorder.built.append((self.kind, kwargs))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RecordedProducer(Recorder):
    kind = "producer"

    async def send(self, *args: Any, **kwargs: Any) -> "asyncio.Future[None]":
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class RecordedConsumer(Recorder):
    kind = "consumer"

    def assign(self, partitions: Any) -> None:
        return None

    async def seek_to_beginning(self, *partitions: Any) -> None:
        return None


class RecordedAdmin(Recorder):
    kind = "admin"

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [{"topic": topics[0], "partitions": [{"partition": 0}]}]

    async def list_topics(self) -> list[str]:
        return [spec.name for spec in kafka_topics.topic_specs(Topics(), partitions=1, replication=1)]


class RefusingAdmin(RecordedAdmin):
    async def start(self) -> None:
        raise ConnectionError("recorded; not connecting")


class RefusingProducer(RecordedProducer):
    async def start(self) -> None:
        raise ConnectionError("recorded; not connecting")


@pytest.fixture(params=SECURE, ids=lambda p: "-".join(p.values()))
def kafka(request: pytest.FixtureRequest) -> KafkaSettings:
    Recorder.built.clear()
    credentials = {"sasl_username": "spendpipe", "sasl_password": "s3cret"} if "sasl_mechanism" in request.param else {}
    return KafkaSettings.model_validate({"bootstrap_servers": "kafka:9093", **request.param, **credentials})


def assert_secured(kafka: KafkaSettings, kinds: set[str]) -> None:
    built = {kind for kind, _ in Recorder.built}
    assert kinds <= built, f"clients built: {built}"
    for kind, kwargs in Recorder.built:
        assert kwargs["security_protocol"] == kafka.security_protocol, kind
        uses_tls = kafka.security_protocol in ("SSL", "SASL_SSL")
        assert isinstance(kwargs.get("ssl_context"), ssl.SSLContext) is uses_tls, kind
        if kafka.sasl_mechanism is not None:
            assert kwargs["sasl_mechanism"] == kafka.sasl_mechanism, kind
            assert kwargs["sasl_plain_username"] == "spendpipe", kind
            assert kwargs["sasl_plain_password"] == "s3cret", kind
        else:
            assert "sasl_mechanism" not in kwargs, kind


async def test_the_services_broker_secures_its_producer_admin_and_consumers(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", RecordedProducer)
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", RecordedConsumer)
    monkeypatch.setattr(platform_kafka, "TolerantConsumer", RecordedConsumer)  # what the broker swaps in
    monkeypatch.setattr(aiokafka.admin.client, "AIOKafkaAdminClient", RecordedAdmin)
    broker = build_broker(kafka)
    subscriber = broker.subscriber("spend.events", group_id="spendpipe-aggregator")

    await broker.connect()
    subscriber.builder(group_id="spendpipe-aggregator")  # what subscriber.start() builds its consumer with

    assert_secured(kafka, {"producer", "admin", "consumer"})


async def test_compacted_topic_readers_secure_their_admin_and_consumer(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compacted, "TolerantConsumer", RecordedConsumer)
    monkeypatch.setattr(kafka_topics, "AIOKafkaAdminClient", RecordedAdmin)  # compacted readers find partitions there
    reader = CompactedTopicReader(kafka=kafka, topic="spend.decisions", on_record=lambda record: None)

    await reader.start()
    await reader.stop()

    assert_secured(kafka, {"admin", "consumer"})


def test_the_gateway_secures_its_producer_and_decisions_reader(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(publisher, "AIOKafkaProducer", RefusingProducer)
    monkeypatch.setattr(kafka_topics, "AIOKafkaAdminClient", RefusingAdmin)
    plugin = SpendpipeLogger.from_settings(GatewaySettings(kafka=kafka, spool_dir=tmp_path))

    plugin.start()
    try:
        eventually_sync(
            lambda: {kind for kind, _ in Recorder.built},
            lambda kinds: {"producer", "admin"} <= kinds,
            within=10,
            what="the gateway's publisher and decisions reader to build their clients",
        )
    finally:
        plugin.close(timeout=10)

    assert_secured(kafka, {"producer", "admin"})


async def test_topic_creation_and_the_budget_admin_are_secured(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_topics, "AIOKafkaAdminClient", RecordedAdmin)
    monkeypatch.setattr(budget_admin, "AIOKafkaProducer", RecordedProducer)
    specs = kafka_topics.topic_specs(Topics(), partitions=1, replication=1)

    await kafka_topics.ensure_topics(kafka, specs)
    await asyncio.to_thread(BudgetAdmin(kafka=kafka, topics=Topics()).set, {"scope": "global", "max_budget": "1"})

    assert_secured(kafka, {"admin", "producer"})
