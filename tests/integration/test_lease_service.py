"""The enforcer's lease desk on the real broker and chDB: a gateway's request is answered by a
grant the gateway's verifier accepts, a hostile record is counted and the next request is still
answered, a lowered cap revokes the chain, and a gateway's settle of a returned chain frees what
its calls in flight did not cost."""

import asyncio
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.leases import GRANT_MESSAGE_TYPE, LeaseGrant, LeaseRequest, LeaseSettings, commitment_of
from spendpipe.contracts.topics import Topics
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.gateway.leases.book import LeaseBook, Verdict
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.pipeline import produce_records, read_topic, running_pipeline
from tests.support.signing import write_records
from tests.support.waiting import eventually

QUICK = LeaseSettings(ttl_s=1, settle_grace_s=0.5)
BUDGET = {"scope": "team:eng", "max_budget": "1", "budget_duration": "24h", "headroom_leases": True}


def ask(chain: str, secret: str, want: str) -> LeaseRequest:
    return LeaseRequest(
        kind="request",
        gateway_id="gw-1",
        chain=chain,
        scope="team:eng",
        want=Decimal(want),
        commitment=commitment_of(secret),
    )


async def grants(bootstrap: str, topics: Topics, expected: int) -> list[LeaseGrant]:
    verifier = GatewaySettings(kafka=KafkaSettings(bootstrap_servers=bootstrap)).signing.verifier(
        message_type=GRANT_MESSAGE_TYPE,
        topic=topics.leases,
        rejected=Counter("rejected", "", ["topic", "reason"], registry=CollectorRegistry()),
    )
    records = await read_topic(bootstrap, topics.leases, expected)
    assert all(verifier.accepts(record) for record in records)  # signed by the enforcer
    return [LeaseGrant.model_validate_json(record.value or b"") for record in records]


async def leased_budget(
    kafka_broker: str, make_topics, clickhouse_settings: ClickhouseSettings
) -> tuple[Topics, BudgetAdmin, AggregatorSettings, EnforcerSettings]:
    """Fresh topics with `BUDGET` set, its writer, and the settings of a pipeline lending from it
    with `QUICK` leases."""
    topics: Topics = await make_topics(kafka_broker)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, BUDGET)
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    return topics, admin, aggregator, enforcer_settings(kafka_broker, topics, clickhouse_settings, leases=QUICK)


async def test_requests_are_answered_by_signed_grants_and_a_lowered_cap_revokes(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics, admin, aggregator, enforcer = await leased_budget(kafka_broker, make_topics, clickhouse_settings)
    chain, secret = secrets.token_hex(16), secrets.token_hex(32)
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time) as service:
        await eventually(service.leases.desk.lending, bool, within=30, what="the desk's start-up wait")
        key = b"team:eng"
        reply = [("reply_to", topics.leases.encode())]  # a writer asking the enforcer to write there
        await write_records(
            kafka_broker,
            topics.lease_requests,
            [(key, b"{not json", reply), (key, ask(chain, secret, "0.25").model_dump_json().encode(), reply)],
        )
        (grant,) = await grants(kafka_broker, topics, 1)
        assert (grant.chain, grant.granted, grant.free, grant.revoked) == (
            chain,
            Decimal("0.25"),
            Decimal("0.75"),
            False,
        )
        rejected = service.metrics.records_rejected.labels(topic=topics.lease_requests, reason="unreadable")
        assert rejected._value.get() == 1

        await asyncio.to_thread(admin.set, BUDGET | {"max_budget": "0.1"})
        revocations = await eventually(
            lambda: grants(kafka_broker, topics, 1), lambda gs: len(gs) >= 2, within=30, what="the revocation"
        )
        assert revocations[-1].chain == chain
        assert revocations[-1].revoked  # and every record on the topic is a signed grant (`grants`)


async def test_a_fresh_enforcer_lends_at_once_and_a_successor_waits_for_its_predecessors_chains(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics: Topics = await make_topics(kafka_broker)
    patient = LeaseSettings(ttl_s=60, settle_grace_s=0.5)  # without the grants read back: a minute's wait
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings, leases=patient)

    # given no grant on the topic, nothing was lent before: the first enforcer lends at once
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time) as service:
        assert service.leases.desk.lending()

    # given a grant a predecessor issued that expires in 10 s
    expires = time.time() + 10
    grant = LeaseGrant(
        gateway_id="gw-1",
        chain=secrets.token_hex(16),
        scope="team:eng",
        version=1,
        granted=Decimal("0.25"),
        free=Decimal("0.75"),
        ttl_s=60,
        expires_at=datetime.fromtimestamp(expires, UTC),
        issued_at=datetime.now(UTC),
    )
    await produce_records(kafka_broker, topics.leases, [(b"team:eng", grant.model_dump_json().encode())])

    # then its successor lends nothing until that chain expired and settled, and no later
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time) as service:
        assert not service.leases.desk.lending()
        await eventually(service.leases.desk.lending, bool, within=40, what="the predecessor's chain to lapse")
        assert time.time() >= expires + patient.settle_grace_s
        assert time.time() < expires + patient.ttl_s


async def test_a_gateways_settle_frees_what_its_returned_chains_call_in_flight_did_not_cost(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics, _admin, aggregator, enforcer = await leased_budget(kafka_broker, make_topics, clickhouse_settings)
    book = LeaseBook(gateway_id="gw-1", settings=LeaseSettings())
    needs = {"team:eng": ("team:eng", "", Decimal("0.4"))}

    async def answer(requests: list[LeaseRequest], seen: int) -> LeaseGrant:
        """Send the gateway's requests; the enforcer's answer to the last of them."""
        records = [(r.key.encode(), r.model_dump_json().encode()) for r in requests]
        await produce_records(kafka_broker, topics.lease_requests, records)
        return (await grants(kafka_broker, topics, seen + 1))[-1]

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time) as service:
        await eventually(service.leases.desk.lending, bool, within=30, what="the desk's start-up wait")
        # given a call reserved on a chain that is then returned while the call is in flight
        book.apply(await answer(book.reserve("call", needs, "m", time.monotonic())[1], 0), time.monotonic())
        assert book.reserve("call", needs, "m", time.monotonic())[0] is Verdict.RESERVED
        returned = await answer(book.to_return(time.monotonic(), everything=True), 1)
        assert (returned.free, returned.headroom) == (Decimal("0.6"), Decimal(1))  # the call may cost 0.4
        # when the call fails, at no cost, and the gateway settles the returned chain
        book.settle("call", None)
        (settle,) = book.to_return(time.monotonic())
        settled = await answer([settle], 2)
        # then nothing is lent for it any more
        assert (settled.chain, settled.free) == (returned.chain, Decimal(1))
        rejected = service.metrics.records_rejected.labels(topic=topics.lease_requests, reason="unreadable")
        assert rejected._value.get() == 0
