"""Announcements on spend.flushes are read one by one: a malformed one, one whose header has no
value, or one naming a scope that does not parse, in the batch of a genuine one, is counted and
skipped, and the genuine one is still judged (here: the key is blocked); so is one written before
them that the consumer cannot parse. The aggregator announces
on a topic of its own, so the enforcer hears only what this test writes."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import ManualClock, events_counted, produce, read_topic, running_pipeline
from tests.support.raw_records import produce_batch
from tests.support.signing import write_records
from tests.support.waiting import eventually

KEY = f"{0xBAD:064x}"


async def test_a_genuine_announcement_is_judged_beside_hostile_ones(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given a key over its budget in the totals, not yet announced to the enforcer, and a global
    # budget that derives end customers' caps (so an end customer scope is judged)
    # (one partition each: what is written later is handled later)
    topics, elsewhere = await make_topics(kafka_broker, 1), await make_topics(kafka_broker, 1)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [{"scope": f"key:{KEY}", "max_budget": "0.50"}, {"scope": "global", "max_end_user_budget": "5"}],
    )
    aggregator = aggregator_settings(
        kafka_broker, topics.model_copy(update={"flushes": elsewhere.flushes}), clickhouse_settings
    )
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as enforcing:
            await eventually(enforcing.ready.is_set, bool, within=30, what="the enforcer judged every budget")
            await produce(
                kafka_broker,
                topics.events,
                [make_event(occurred_at=at(clock()), key_hash=KEY, cost=Decimal("0.60")).to_json()],
            )
            await events_counted(clickhouse, 1, within=30)

            # when hostile announcements are written with a genuine one, in one batch
            def announcement(*scopes: ScopeRef) -> bytes:
                return (
                    ScopesFlushed(flush_id="f", flushed_at=datetime.now(UTC), events=1, scopes=scopes, models=())
                    .model_dump_json()
                    .encode()
                )

            genuine = announcement(ScopeRef(type="key", id=KEY))
            await produce_batch(kafka_broker, topics.flushes, 0, [genuine, genuine], unreadable={0})
            reply = ("reply_to", topics.leases.encode())  # FastStream would answer there: the enforcer may write it
            await write_records(
                kafka_broker,
                topics.flushes,
                [
                    (b"a", b'{"flush_id": 7', [reply]),
                    (b"b", genuine, [("content-type", None), reply]),
                    (b"c", announcement(ScopeRef(type="end_user", id="")), [reply]),
                    (b"d", genuine, [("x", b"\xff\xfe"), reply]),
                    (b"e", genuine, [reply]),
                ],
            )

            # then the key is blocked, and what could not be read was counted
            block = await eventually(
                lambda: gateway.blocking(RequestIdentity(key_hash=KEY).budget_keys("gpt-4o-mini"), now=at(clock())),
                bool,
                within=30,
                what="the key blocked at the gateway",
            )
            unreadable = enforcing.metrics.records_rejected.labels(topic=topics.flushes, reason="unreadable")
            # (a record written now is handled after the batch that blocked the key, and its answer)
            await write_records(kafka_broker, topics.flushes, [(b"z", b"{", [])])
            await eventually(unreadable._value.get, lambda n: n >= 3, within=30, what="a later announcement handled")

    assert block.scope == f"key:{KEY}"
    assert unreadable._value.get() == 3  # the malformed announcements and the scope without an id
    # and no record naming where its answer should go made the enforcer write there
    assert await read_topic(kafka_broker, topics.leases, expected=0) == []


async def test_a_flush_too_large_for_one_announcement_is_announced_in_pieces(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    """Three records of 32 tags of 16,000 characters each, with a genuine over-budget event, in
    one flush: its scopes hold 1.5 MB, more than a Kafka record. The genuine key is still blocked."""
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set_many, [{"scope": f"key:{KEY}", "max_budget": "0.50"}])
    # one fetch, one flush: the broker answers once it holds all four records (the last three
    # make the 1.5 MB it waits for)
    aggregator = aggregator_settings(
        kafka_broker, topics, clickhouse_settings, fetch_min_bytes=1_500_000, flush_interval_ms=10_000
    )
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    bulky = [
        make_event(occurred_at=at(clock()), request_tags=[f"{n}-{t}-" + "x" * 16_000 for t in range(32)])
        for n in range(3)
    ]
    over_budget = make_event(occurred_at=at(clock()), key_hash=KEY, cost=Decimal("0.60"))

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as enforcing:
            await eventually(enforcing.ready.is_set, bool, within=30, what="the enforcer judged every budget")
            await produce(kafka_broker, topics.events, [e.to_json() for e in [over_budget, *bulky]], key=b"one")
            await events_counted(clickhouse, 4, within=30)
            block = await eventually(
                lambda: gateway.blocking(RequestIdentity(key_hash=KEY).budget_keys("gpt-4o-mini"), now=at(clock())),
                bool,
                within=30,
                what="the key blocked at the gateway",
            )

    assert block.scope == f"key:{KEY}"
