"""Kafka ACLs, against a real broker: SASL/SCRAM on the client listener, the KRaft
StandardAuthorizer, no access without an ACL (deploy/kafka/sasl-acls.properties); the principals
and ACLs of docs/operations.md, created with the commands it gives (deploy/kafka/acls.sh, which
runs kafka-acls and kafka-configs). Each principal connects with spendpipe's own client settings
(`KafkaSettings` with SASL), through spendpipe's clients where one exists: the gateway plugin, the
topic creation of `spendpipe topics create`, BudgetAdmin, the compacted-topic reader. A gateway
may write events, sessions and lease requests and read decisions, budgets and lease grants, never
write decisions, budgets or grants;
each other principal does its job and is refused at least one thing it must not do."""

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from prometheus_client import CollectorRegistry

from dev.local_kafka import ROOT
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.compacted import TopicRecord, read_to_end
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import TopicsRefusedError, ensure_topics, topic_specs
from tests.support.events import make_event
from tests.support.kafka_acls import (
    SecuredBroker,
    consume_in_group,
    produce,
    read_partition_zero,
    run_acls,
    secured_broker,
)
from tests.support.waiting import eventually

TOPICS = Topics()
"""The default names: this broker is the test's own, and acls.sh grants on the default names."""
AGGREGATOR_GROUP = "spendpipe-aggregator"
ENFORCER_GROUP = "spendpipe-enforcer"
LEASE_DESK_GROUP = "spendpipe-enforcer-leases"
WITHIN_S = 20.0


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """The broker, the ACLs (`acls.sh grant`), a principal created at run time (`acls.sh user
    reader`), and spendpipe's topics as the admin principal creates them."""
    with secured_broker(tmp_path_factory.mktemp("kafka-acls")) as broker:
        broker.acls("grant")
        broker.acls("user", "reader", stdin=broker.passwords["reader"] + "\n")
        created = asyncio.run(
            ensure_topics(broker.settings("spendpipe-admin"), topic_specs(TOPICS, partitions=3, replication=1))
        )
        assert sorted(created) == sorted(TOPICS.model_dump().values()), "the admin principal creates every topic"
        yield broker


def marker() -> bytes:
    return f"acl-{uuid.uuid4().hex}".encode()


async def values_in(kafka: KafkaSettings, topic: str) -> list[bytes | None]:
    """Every value of `topic`, read by spendpipe's compacted-topic reader (no consumer group)."""
    values: list[bytes | None] = []

    def keep(record: TopicRecord) -> None:
        values.append(record.value)

    await read_to_end(kafka=kafka, topic=topic, on_record=keep)
    return values


async def handed_over(secured: SecuredBroker, topic: str, *, writer: str, reader: str, group: str) -> bytes:
    """`writer` writes a record to `topic` and `reader` reads it back as a member of `group`, as
    the services hand records to each other; the record's value."""
    value = marker()
    await produce(secured.settings(writer), topic, value)
    await consume_in_group(secured.settings(reader), topic, group, value, within_s=WITHIN_S)
    return value


async def test_the_gateway_writes_events_and_sessions_and_reads_decisions_and_budgets(
    secured: SecuredBroker, tmp_path: Path
) -> None:
    gateway = secured.settings("gateway")
    # given a budget (written by the admin principal) and a decision (by the enforcer principal)
    budgets = BudgetAdmin(kafka=secured.settings("spendpipe-admin"), topics=TOPICS)
    await asyncio.to_thread(budgets.set, {"scope": "team:acl-test", "max_budget": "10", "budget_duration": "24h"})
    decision = marker()
    await produce(secured.settings("enforcer"), TOPICS.decisions, decision)

    # when the gateway plugin runs with the gateway principal's settings
    registry = CollectorRegistry()
    plugin = SpendpipeLogger.from_settings(
        GatewaySettings(kafka=gateway, topics=TOPICS, spool_dir=tmp_path / "spool", gateway_id="acl-gateway"),
        registry=registry,
    )
    event = make_event()
    try:
        plugin.start()
        # then it reads the decisions (block list) and budgets (limits) topics to their ends
        await eventually(
            plugin.ops.readiness.report,
            lambda report: set(report.values()) == {"ready"},
            within=WITHIN_S,
            what="the gateway plugin reading decisions and budgets to their ends",
        )
        # and its publisher delivers an event to spend.events (acknowledged, not spooled)
        plugin.publisher.publish(event)
        assert plugin.publisher.wait_idle(WITHIN_S)
        assert registry.get_sample_value("spendpipe_gateway_events_published_total") == 1
        assert not registry.get_sample_value("spendpipe_gateway_events_spooled_total")
    finally:
        plugin.close()
    assert event.to_json() in await values_in(secured.settings("reader"), TOPICS.events)

    # the gateway's own reads, record by record
    assert decision in await values_in(gateway, TOPICS.decisions)
    assert any(b"team:acl-test" in (value or b"") for value in await values_in(gateway, TOPICS.budgets))
    # it writes the sessions log and reads it back (other gateways' admissions)
    session = marker()
    await produce(gateway, TOPICS.sessions, session)
    assert session in await values_in(gateway, TOPICS.sessions)
    # it asks the enforcer's lease desk for headroom, and reads the grants (written by the enforcer)
    await handed_over(secured, TOPICS.lease_requests, writer="gateway", reader="enforcer", group=LEASE_DESK_GROUP)
    grant = marker()
    await produce(secured.settings("enforcer"), TOPICS.leases, grant)
    assert grant in await values_in(gateway, TOPICS.leases)


@pytest.mark.parametrize("topic", [TOPICS.decisions, TOPICS.budgets, TOPICS.alerts, TOPICS.flushes, TOPICS.leases])
async def test_the_gateway_cannot_write_what_others_own(secured: SecuredBroker, topic: str) -> None:
    # a forged decision, budget or lease grant from a compromised gateway is refused by the broker
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(secured.settings("gateway"), topic, marker())


async def test_the_gateway_cannot_read_other_gateways_spend_or_join_a_service_group(secured: SecuredBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await read_partition_zero(secured.settings("gateway"), TOPICS.events, marker(), within_s=WITHIN_S)
    with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
        await consume_in_group(secured.settings("gateway"), TOPICS.decisions, ENFORCER_GROUP, marker(), within_s=5)


async def test_a_topic_the_broker_refuses_to_create_is_an_error_not_a_success(secured: SecuredBroker) -> None:
    # the gateway may create no topic: with its login, creating one is refused, not reported created
    name = f"acl-new-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TopicsRefusedError, match=f"{name}: TopicAuthorizationFailedError"):
        await ensure_topics(secured.settings("gateway"), [NewTopic(name, 1, 1)])


async def test_a_wrong_password_is_not_let_in(secured: SecuredBroker) -> None:
    with pytest.raises(KafkaConnectionError):
        await produce(secured.settings("gateway", password="not-the-password"), TOPICS.events, marker())


async def test_the_aggregator_reads_events_in_its_group_and_writes_dead_letters_and_flushes(
    secured: SecuredBroker,
) -> None:
    aggregator = secured.settings("aggregator")
    event = await handed_over(secured, TOPICS.events, writer="gateway", reader="aggregator", group=AGGREGATOR_GROUP)
    await produce(aggregator, TOPICS.events_dead_letter, marker())
    await produce(aggregator, TOPICS.flushes, marker())
    # refused: forging decisions, and another service's consumer group
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(aggregator, TOPICS.decisions, marker())
    with pytest.raises(GroupAuthorizationFailedError):
        await consume_in_group(aggregator, TOPICS.events, ENFORCER_GROUP, event, within_s=5)


async def test_the_enforcer_reads_flushes_budgets_decisions_alerts_and_writes_decisions_and_alerts(
    secured: SecuredBroker,
) -> None:
    enforcer = secured.settings("enforcer")
    await handed_over(secured, TOPICS.flushes, writer="aggregator", reader="enforcer", group=ENFORCER_GROUP)
    decision, alert = marker(), marker()
    await produce(enforcer, TOPICS.decisions, decision)
    await produce(enforcer, TOPICS.alerts, alert)
    assert decision in await values_in(enforcer, TOPICS.decisions)
    assert alert in await values_in(enforcer, TOPICS.alerts)
    await values_in(enforcer, TOPICS.budgets)
    await produce(enforcer, TOPICS.leases, marker())
    # refused: raising a budget, writing spend, and asking itself for leases in a gateway's name
    for topic in (TOPICS.budgets, TOPICS.events, TOPICS.lease_requests):
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(enforcer, topic, marker())


async def test_the_admin_writes_and_lists_budgets_but_cannot_forge_decisions(secured: SecuredBroker) -> None:
    admin_settings = secured.settings("spendpipe-admin")
    admin = BudgetAdmin(kafka=admin_settings, topics=TOPICS)
    await asyncio.to_thread(admin.set, {"scope": "team:acl-admin", "max_budget": "5", "budget_duration": "1d"})
    assert "team:acl-admin" in [budget.scope for budget in await asyncio.to_thread(admin.current)]
    await values_in(admin_settings, TOPICS.decisions)  # `blocks list`
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(admin_settings, TOPICS.decisions, marker())


async def test_the_reader_reads_every_topic_and_writes_none(secured: SecuredBroker) -> None:
    reader = secured.settings("reader")  # created on the running cluster by `acls.sh user`
    written = {}
    for topic, writer in [
        (TOPICS.events, "gateway"),
        (TOPICS.sessions, "gateway"),
        (TOPICS.events_dead_letter, "aggregator"),
        (TOPICS.flushes, "aggregator"),
        (TOPICS.decisions, "enforcer"),
        (TOPICS.alerts, "enforcer"),
        (TOPICS.budgets, "spendpipe-admin"),
        (TOPICS.lease_requests, "gateway"),
        (TOPICS.leases, "enforcer"),
    ]:
        written[topic] = marker()
        await produce(secured.settings(writer), topic, written[topic])
    for topic, value in written.items():
        assert value in await values_in(reader, topic), topic
    # in a consumer group of its own name (reader-...), e.g. kafka-console-consumer --group reader-1
    await consume_in_group(reader, TOPICS.events, "reader-dashboards", written[TOPICS.events], within_s=WITHIN_S)
    # it can write nothing: spendpipe's idempotent producers are refused a producer id (no Write
    # on any topic), and a plain producer is refused the topic
    with pytest.raises(ClusterAuthorizationFailedError):
        await produce(reader, TOPICS.events, marker())
    for topic in written:
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(reader, topic, marker(), idempotent=False)


def test_the_docs_give_the_commands_acls_sh_runs() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    block = docs.split("The commands it runs, with the default names:\n\n```bash\n", 1)[1].split("```", 1)[0]
    assert block == run_acls("grant", "--bootstrap-server", "$BOOTSTRAP", "--dry-run")
