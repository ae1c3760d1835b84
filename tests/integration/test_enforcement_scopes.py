"""Which budget governs a request: team over personal, a member's cap within the team, end
customers by the request's `user`, a default for every end customer; a bad budget refused; a
restarted enforcer and a cold gateway rebuild their state from the topics."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.budgets import BudgetRejectedError
from spendpipe.contracts.decisions import Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import ManualClock, produce, read_topic, running_pipeline
from tests.support.waiting import eventually


def refusal(gateway: BlockList, clock: ManualClock, **request: Any) -> Decision | None:
    return gateway.blocking(RequestIdentity(**request).budget_keys("gpt-4o-mini"), now=at(clock()))


async def test_team_member_and_end_customer_budgets(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": "team:eng", "max_budget": "10", "budget_duration": "1mo", "max_budget_in_team": "0.50"},
            {"scope": "user:bob", "max_budget": "0.10"},  # bob's personal budget
            {"scope": "global", "max_budget": "1000", "max_end_user_budget": "0.50"},
            {"scope": "end_user:vip", "max_budget": "2.00"},  # overrides the default
        ],
    )
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    def spent(cost: str, **who: str | None) -> bytes:
        attribution = {"key_hash": None, "user_id": None, "team_id": None, "org_id": None, "end_user": None}
        return make_event(occurred_at=at(clock()), cost=Decimal(cost), **(attribution | who)).to_json()

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            await produce(
                kafka_broker,
                topics.events,
                [
                    spent("0.60", user_id="alice", team_id="eng"),  # over the member cap
                    spent("0.30", user_id="bob", team_id="eng"),  # under it, over bob's personal 0.10
                    spent("0.60", end_user="acme"),  # over the end-customer default
                    spent("0.60", end_user="vip"),  # under vip's own budget
                ],
            )
            member = await eventually(
                lambda: refusal(gateway, clock, user_id="alice", team_id="eng"), bool, within=30, what="alice"
            )
            customer = await eventually(
                lambda: refusal(gateway, clock, end_user="acme"), bool, within=30, what="acme blocked"
            )
            personal = await eventually(
                lambda: refusal(gateway, clock, user_id="bob"), bool, within=30, what="bob's own budget"
            )

    # a member cap blocks only that member of the team
    assert member.scope == "team_member:eng/alice"
    assert "max_budget_in_team of team:eng" in member.reason
    # a team key is governed by the team budget, not bob's personal one
    assert refusal(gateway, clock, user_id="bob", team_id="eng") is None
    assert personal.scope == "user:bob"
    # end customers: the default applies to acme, vip's own budget to vip
    assert customer.scope == "end_user:acme"
    assert "max_end_user_budget" in customer.reason
    assert refusal(gateway, clock, end_user="vip") is None
    assert refusal(gateway, clock, user_id="carol", team_id="eng") is None


async def test_a_bad_budget_is_refused_with_its_field_and_nothing_is_published(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    good = {"scope": "team:eng", "max_budget": "10"}

    with pytest.raises(BudgetRejectedError) as refused:
        await asyncio.to_thread(admin.set_many, [good, {"scope": "team:ops", "max_budget": "-5"}])
    assert refused.value.problems == ["max_budget: Input should be greater than or equal to 0"]
    with pytest.raises(BudgetRejectedError, match=r"budget_duration: unknown duration '3x'"):
        await asyncio.to_thread(admin.set, {"scope": "team:k", "max_budget": "1", "budget_duration": "3x"})
    with pytest.raises(BudgetRejectedError, match=r"budget_limits: 1d and 24h are the same window"):
        await asyncio.to_thread(
            admin.set,
            {
                "scope": "team:eng",
                "budget_limits": [
                    {"budget_duration": "1d", "max_budget": "1"},
                    {"budget_duration": "24h", "max_budget": "2"},
                ],
            },
        )

    assert await read_topic(kafka_broker, topics.budgets, expected=0) == []
    assert await asyncio.to_thread(admin.current) == []


async def test_enforcer_restart_and_cold_gateway_rebuild_from_the_topics(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    event = make_event(occurred_at=at(clock()), cost=Decimal("1.50"), team_id="eng")

    # given a block decided by one enforcer
    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            await produce(kafka_broker, topics.events, [event.to_json()])
            first = await eventually(
                lambda: gateway.blocking(["team:eng"], now=at(clock())), bool, within=30, what="block"
            )

    # when the enforcer restarts, and more spend arrives for another team
    async with running_pipeline(aggregator, enforcer, clickhouse, clock) as restarted:
        await produce(kafka_broker, topics.events, [make_event(cost=Decimal("0.1"), team_id="ops").to_json()])
        await eventually(lambda: len(restarted.enforcer.blocks()), bool, within=30, what="state read back")
        assert [d.key for d in restarted.enforcer.blocks()] == ["team:eng"]

    # then no decision was lost, repeated or reversed: the topic still holds exactly one, the block
    decisions = [Decision.model_validate_json(r.value) for r in await read_topic(kafka_broker, topics.decisions, 1)]
    assert decisions == [first]

    # and a gateway that starts cold reads it back before it reports in sync
    with following_blocklist(kafka_broker, topics.decisions) as cold:
        await eventually(cold.in_sync.is_set, bool, within=30, what="cold gateway in sync")
        assert cold.blocking(["team:eng"], now=at(clock())) == first
