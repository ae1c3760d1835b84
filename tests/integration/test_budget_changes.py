"""Budgets change while the pipeline runs: a soft budget alerts once per window, a raised cap
lifts a block, a deleted budget lifts its blocks — no restart anywhere."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.alerts import MESSAGE_TYPE as ALERT_TYPE
from spendpipe.contracts.alerts import SoftBudgetAlert
from spendpipe.contracts.declared_budgets import MESSAGE_TYPE as DECLARED_TYPE
from spendpipe.contracts.topics import message_type
from spendpipe.enforcer.metrics import TICK_STEPS
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist, latest
from tests.support.pipeline import ManualClock, produce, read_topic, running_pipeline
from tests.support.signing import signing_from_environment, write_records
from tests.support.waiting import eventually


async def test_soft_budget_alerts_once_and_cap_changes_apply_live(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    budget = {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo", "soft_budget": "0.50"}
    await asyncio.to_thread(admin.set, budget)
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    def spend(cost: str) -> list[bytes]:
        return [make_event(occurred_at=at(clock()), cost=Decimal(cost), team_id="eng").to_json()]

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as service:
            # a soft budget crossed twice in one window alerts once
            await produce(kafka_broker, topics.events, spend("0.60"))
            await produce(kafka_broker, topics.events, spend("0.10"))
            # the hard cap: blocked
            await produce(kafka_broker, topics.events, spend("0.40"))
            blocked = await eventually(
                lambda: gateway.blocking(["team:eng"], now=at(clock())), bool, within=30, what="block at 1.10"
            )
            assert blocked.spend == Decimal("1.1")

            # when the cap is raised, the block lifts without a restart
            await asyncio.to_thread(admin.set, budget | {"max_budget": "5.00"})
            await eventually(
                lambda: latest(gateway, "team:eng"), lambda d: not d.blocked, within=10, what="unblock on raise"
            )
            # and when it is lowered again and then deleted, the block comes back and then lifts
            await asyncio.to_thread(admin.set, budget | {"max_budget": "1.00"})
            await eventually(lambda: latest(gateway, "team:eng"), lambda d: d.blocked, within=10, what="block again")
            await asyncio.to_thread(admin.delete, "team:eng")
            await eventually(
                lambda: latest(gateway, "team:eng"), lambda d: not d.blocked, within=10, what="unblock on delete"
            )
            assert service.enforcer.book.get("team:eng") is None

    records = await read_topic(kafka_broker, topics.alerts, 1)
    # the topic carries burn-rate warnings too (0.60 in the minute under way reaches 1.00 in minutes)
    alerts = [SoftBudgetAlert.model_validate_json(r.value) for r in records if message_type(r.headers) == ALERT_TYPE]
    assert len(alerts) == 1
    assert (alerts[0].scope, alerts[0].soft_budget, alerts[0].window) == ("team:eng", Decimal("0.5"), "1mo")
    assert alerts[0].spend >= Decimal("0.60")
    assert alerts[0].window_start == datetime(2026, 6, 1, tzinfo=UTC)


async def test_a_declared_budget_under_a_key_that_is_no_scope_stops_no_budget_change(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    """A withdrawal under a key that is no scope (a newer gateway's scope type, or anyone holding a
    gateway's key) is refused and counted, and the tick goes on: a raised cap still lifts its block."""
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    budget = {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo"}
    await asyncio.to_thread(admin.set, budget)
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    spend = make_event(occurred_at=at(clock()), cost=Decimal("1.10"), team_id="eng").to_json()

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as service:
            await produce(kafka_broker, topics.events, [spend])
            await eventually(lambda: latest(gateway, "team:eng"), lambda d: d and d.blocked, within=30, what="block")

            headers = signing_from_environment().signer().headers(DECLARED_TYPE, b"project:p1", None)
            await write_records(kafka_broker, topics.declared_budgets, [(b"project:p1", None, headers)])
            refused = service.metrics.records_rejected.labels(topic=topics.declared_budgets, reason="unreadable")
            await eventually(refused._value.get, lambda n: n == 1, within=10, what="the key refused")

            await asyncio.to_thread(admin.set, budget | {"max_budget": "5.00"})
            await eventually(
                lambda: latest(gateway, "team:eng"), lambda d: not d.blocked, within=10, what="unblock on raise"
            )
            assert service.not_ready() is None
            assert [service.metrics.tick_failures.labels(step)._value.get() for step in TICK_STEPS] == [0] * 4
