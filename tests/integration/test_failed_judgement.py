"""A judgement that fails after it decided, on the real broker and chDB with the real enforcer and a
gateway's block list: ClickHouse is lost between a flush judgement's first query (the budget's
spend, which decides the block) and its next (the rate limit's). The block the enforcer now holds
still reaches the gateway: judged again, it is in force and nothing new is decided, so without the
tick sending it the gateway would never refuse the scope."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.rate_limits import RateLimit
from spendpipe.enforcer.rate_reader import RateReader, RateUsage
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import ManualClock, produce, running_pipeline
from tests.support.waiting import eventually


class LostRates(RateReader):
    """The real rate reader, whose query fails while `lost`: the store went away after the
    judgement's spend was read."""

    def __init__(self, *, clickhouse: ClickhouseStore) -> None:
        super().__init__(clickhouse=clickhouse)
        self.lost = False
        self.failed = 0

    def measure(self, limit: RateLimit, now: float) -> RateUsage:
        if self.lost:
            self.failed += 1
            raise ConnectionError("ClickHouse went away (held by the test)")
        return super().measure(limit, now)


async def test_a_block_decided_by_a_judgement_that_then_failed_reaches_the_gateway(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set, {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo", "rpm_limit": 1000}
    )
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as service:
            rates = LostRates(clickhouse=clickhouse)
            service.enforcer._rates = rates
            rates.lost = True
            # team eng spends past its cap: each flush's judgement decides the block, then fails
            event = make_event(occurred_at=at(clock()), cost=Decimal("1.10"), team_id="eng")
            await produce(kafka_broker, topics.events, [event.to_json()])

            blocked = await eventually(
                lambda: gateway.blocking(["team:eng"], now=at(clock())), bool, within=30, what="team:eng blocked"
            )

            assert blocked.spend == Decimal("1.1")
            assert rates.failed >= 1, "no judgement failed: the test did not reach the failure"
            assert blocked == service.enforcer.last("team:eng")
