"""Budgets against exact totals, with the enforcer's clock moved across midnight, Sunday and the
1st of the month: blocks appear when a cap is reached and lift at the window reset with no
traffic, within a second; real Kafka, real ClickHouse, the gateway's block list as consumer."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.decisions import Decision
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist, latest
from tests.support.pipeline import ManualClock, produce, read_topic, running_pipeline
from tests.support.waiting import eventually

pytestmark = pytest.mark.timing  # blocks lift within 1 s of the reset

KEY = "ab" * 32


async def spend(bootstrap: str, topic: str, clock: ManualClock, *costs: str, **attribution: str | None) -> None:
    events = [
        make_event(occurred_at=at(clock()), cost=Decimal(cost), **({"key_hash": KEY} | attribution)) for cost in costs
    ]
    await produce(bootstrap, topic, [e.to_json() for e in events])


async def test_daily_and_monthly_windows_on_one_key(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 3, 10, 23, 58, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set,
        {
            "scope": f"key:{KEY}",
            "budget_limits": [
                {"budget_duration": "24h", "max_budget": "1.00"},
                {"budget_duration": "1mo", "max_budget": "1.50"},
            ],
        },
    )
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    key = f"key:{KEY}"

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            # given spend under the daily cap, then one more request that reaches it
            await spend(kafka_broker, topics.events, clock, "0.40", "0.40")
            await spend(kafka_broker, topics.events, clock, "0.40")
            # then the key is blocked for the rest of the day
            daily = await eventually(
                lambda: gateway.blocking([key], now=at(clock())), bool, within=30, what="daily block"
            )
            assert (daily.window, daily.spend, daily.cap) == ("24h", Decimal("1.2"), Decimal("1"))
            assert daily.expires_at == datetime(2026, 3, 11, tzinfo=UTC)
            assert "Budget has been exceeded" in daily.reason

            # when the clock passes midnight UTC, with no traffic at all
            clock.set(datetime(2026, 3, 11, 0, 0, 0, 200_000, tzinfo=UTC))
            # then the enforcer lifts the block within a second
            await eventually(lambda: _lifted(latest(gateway, key)), bool, within=1.0, what="unblock at midnight")

            # and the monthly total keeps counting: 1.20 + 0.40 reaches the 1.50 monthly cap
            await spend(kafka_broker, topics.events, clock, "0.40")
            monthly = await eventually(
                lambda: gateway.blocking([key], now=at(clock())), bool, within=30, what="monthly block"
            )
            assert (monthly.window, monthly.spend, monthly.cap) == ("1mo", Decimal("1.6"), Decimal("1.5"))
            assert monthly.expires_at == datetime(2026, 4, 1, tzinfo=UTC)

            # which lifts on the 1st of the next month
            clock.set(datetime(2026, 4, 1, 0, 0, 0, 300_000, tzinfo=UTC))
            await eventually(lambda: _lifted(latest(gateway, key)), bool, within=1.0, what="unblock on the 1st")

    # and the decision log is exactly: block, unblock, block, unblock, in increasing versions
    records = await read_topic(kafka_broker, topics.decisions, expected=4)
    log = [Decision.model_validate_json(r.value) for r in records]
    assert [(d.blocked, d.window) for d in log] == [
        (True, "24h"),
        (False, None),
        (True, "1mo"),
        (False, None),
    ]
    assert [d.version for d in log] == sorted({d.version for d in log})


async def test_a_weekly_window_resets_at_sunday_midnight(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    saturday_night = datetime(2026, 11, 28, 23, 59, 30, tzinfo=UTC)  # a Saturday
    clock = ManualClock(saturday_night)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:search", "max_budget": "0.50", "budget_duration": "7d"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            await spend(kafka_broker, topics.events, clock, "0.30", "0.30", team_id="search")
            weekly = await eventually(
                lambda: gateway.blocking(["team:search"], now=at(clock())),
                bool,
                within=30,
                what="weekly block",
            )
            assert weekly.window == "7d"
            assert weekly.expires_at == datetime(2026, 11, 29, tzinfo=UTC)  # Sunday 00:00

            clock.set(datetime(2026, 11, 29, 0, 0, 0, 100_000, tzinfo=UTC))
            await eventually(
                lambda: _lifted(latest(gateway, "team:search")), bool, within=1.0, what="unblock on Sunday"
            )


def _lifted(decision: Decision | None) -> bool:
    return decision is not None and not decision.blocked
