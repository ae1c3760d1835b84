"""Tag budgets and provider budgets (LiteLLM's tag budgets and `provider_budget_config`) through
real Kafka and the real ClickHouse engine: a call counts once towards each distinct tag it
carries and towards its provider, exactly; a tag over its budget blocks calls carrying it (and
no other call), a provider over its budget blocks calls to it; a raised cap and a new day lift
the blocks."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.budget_file import budgets_from_document
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import overflow_marker
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist, latest
from tests.support.pipeline import ManualClock, events_counted, produce, running_pipeline, totals
from tests.support.waiting import eventually

MODEL = "gpt-4o-mini"


def refusal(gateway: BlockList, clock: ManualClock, **request: Any) -> Decision | None:
    return gateway.blocking(RequestIdentity(**request).budget_keys(MODEL), now=at(clock()))


async def test_tag_and_provider_totals_are_exact_and_their_budgets_block_and_unblock(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    tag_budget = {"scope": "tag:batch", "max_budget": "1.00", "budget_duration": "1d"}
    # the provider budget as LiteLLM's proxy config writes it
    document = {"router_settings": {"provider_budget_config": {"openai": {"budget_limit": 2, "time_period": "1d"}}}}
    await asyncio.to_thread(admin.set_many, [tag_budget, *budgets_from_document(document)])
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    def spent(cost: str, tags: tuple[str, ...], provider: str | None) -> bytes:
        return make_event(
            occurred_at=at(clock()), cost=Decimal(cost), model=MODEL, request_tags=tags, provider=provider
        ).to_json()

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            await produce(
                kafka_broker,
                topics.events,
                [
                    # a tag named twice counts once; the overflow marker and an empty tag name no tag
                    spent("0.60", ("batch", "nightly", "batch", "", overflow_marker(3)), "openai"),
                    spent("0.50", ("batch",), "azure"),
                    spent("0.000000000000000000000001", ("nightly",), "openai"),
                    spent("0.70", (), "openai"),
                ],
            )
            await events_counted(clickhouse, 4)
            tag = await eventually(
                lambda: refusal(gateway, clock, tags=("interactive", "batch")), bool, within=30, what="tag block"
            )

            day = totals(clickhouse)
            assert day[("tag", "batch", "")] == Decimal("1.10")
            assert day[("tag", "nightly", "")] == Decimal("0.600000000000000000000001")
            assert day[("tag", "batch", MODEL)] == Decimal("1.10")
            assert day[("provider", "openai", "")] == Decimal("1.300000000000000000000001")
            assert day[("provider", "azure", "")] == Decimal("0.50")
            assert day[("global", "", "")] == Decimal("1.800000000000000000000001")  # once per call
            assert {i for t, i, _ in day if t == "tag"} == {"batch", "nightly"}

            # the tag's block refuses a call carrying it, whatever else it carries, and no other call
            assert (tag.scope, tag.spend) == ("tag:batch", Decimal("1.1"))
            assert refusal(gateway, clock, tags=("nightly",)) is None
            assert refusal(gateway, clock) is None
            assert refusal(gateway, clock, provider="openai") is None  # 1.30 of its 2.00

            # more spend on openai crosses its budget: calls to openai are refused, to azure not
            await produce(kafka_broker, topics.events, [spent("0.80", (), "openai")])
            provider = await eventually(
                lambda: gateway.blocking(["provider:openai"], now=at(clock())), bool, within=30, what="openai block"
            )
            assert (provider.scope, provider.spend) == ("provider:openai", Decimal("2.100000000000000000000001"))
            assert refusal(gateway, clock, provider="openai") == provider
            assert refusal(gateway, clock, provider="azure") is None

            # a raised cap lifts the tag's block; a new day lifts the provider's
            await asyncio.to_thread(admin.set, tag_budget | {"max_budget": "5.00"})
            await eventually(lambda: latest(gateway, "tag:batch"), lambda d: not d.blocked, within=10, what="tag lift")
            assert refusal(gateway, clock, tags=("batch",)) is None
            clock.set(datetime(2026, 6, 16, 0, 0, 0, 200_000, tzinfo=UTC))
            await eventually(
                lambda: latest(gateway, "provider:openai"), lambda d: not d.blocked, within=5, what="provider lift"
            )
            assert refusal(gateway, clock, provider="openai", tags=("batch",)) is None
