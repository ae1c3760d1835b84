"""Burn-rate warnings through the real enforcer with real totals: steady spend that will reach a
daily cap before midnight gives one alert on spend.alerts with the projected time, once per
window; spend that will not gives none. Real Kafka (one partition per topic, so records keep
their order end to end) and chDB; the enforcer's clock stands still."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.alerts import BURN_RATE_MESSAGE_TYPE, BurnRateAlert
from spendpipe.contracts.topics import Topics, message_type
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at
from tests.support.pipeline import ManualClock, produce, read_topic, running_pipeline
from tests.support.waiting import eventually

NOON = datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC)
"""The lookback is 11:45:00 to now, 930 seconds (15 whole minutes and the minute under way)."""


async def test_spend_that_will_reach_the_cap_today_warns_once_and_spend_that_will_not_stays_quiet(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics: Topics = await make_topics(kafka_broker, 1)
    clock = ManualClock(NOON)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    for scope, cap in (("team:eng", "10"), ("team:ops", "1000"), ("team:last", "0.05")):
        await asyncio.to_thread(admin.set, {"scope": scope, "max_budget": cap, "budget_duration": "24h"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    async def spend(team: str, cost: str) -> None:
        await produce(
            kafka_broker,
            topics.events,
            [make_event(occurred_at=at(clock()), cost=Decimal(cost), team_id=team).to_json()],
        )

    async with running_pipeline(aggregator, enforcer, clickhouse, clock):
        # given $1 each in the minute under way: eng's $10 cap is 8,370 s away at that rate (14:20),
        # ops's $1,000 cap 10 days away, after midnight
        await spend("ops", "1.00")
        await spend("eng", "1.00")
        first = await eventually(
            lambda: burn_rate_alerts(kafka_broker, topics), bool, within=30, what="eng's burn-rate alert"
        )
        # when eng spends again in the same window, and then a last team whose warning comes after
        # every judgement before it (one partition: in order)
        await spend("eng", "0.10")
        await spend("last", "0.02")
        alerts = await eventually(
            lambda: burn_rate_alerts(kafka_broker, topics),
            lambda found: "team:last" in [a.scope for a in found],
            within=30,
            what="the last team's burn-rate alert",
        )

    # then eng was warned once, with the projected time; ops never
    assert [a.scope for a in alerts] == ["team:eng", "team:last"]
    eng = alerts[0]
    assert eng == first[0]
    assert (eng.cap, eng.spend, eng.window) == (Decimal(10), Decimal(1), "24h")
    assert eng.projected_exhaustion_at == datetime(2026, 6, 15, 14, 20, tzinfo=UTC)
    assert eng.lookback_start == datetime(2026, 6, 15, 11, 45, tzinfo=UTC)
    assert (eng.window_start, eng.window_end) == (datetime(2026, 6, 15, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))


async def burn_rate_alerts(bootstrap: str, topics: Topics) -> list[BurnRateAlert]:
    records = await read_topic(bootstrap, topics.alerts, expected=0)
    return [
        BurnRateAlert.model_validate_json(r.value) for r in records if message_type(r.headers) == BURN_RATE_MESSAGE_TYPE
    ]
