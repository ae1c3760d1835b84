"""A flush that fails after its totals landed (here: the events insert raises) is read again:
the retry adds nothing to the totals, but it still announces the spend, so the enforcer judges
it and blocks."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.ownership import Fence
from spendpipe.aggregator.store import SpendStore
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import ManualClock, counted_events, produce, read_topic, running_pipeline, totals
from tests.support.waiting import eventually

KEY = f"{0xC0FFEE:064x}"


def fail_the_first_events_insert(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every flush's totals go in before its events: failing the events insert leaves the
    totals in ClickHouse and the offsets uncommitted. Returns the failures, as they happen."""
    failures: list[str] = []
    insert_events = SpendStore.insert_events

    def failing_once(
        self: SpendStore, *, after: dict[int, int], fence: Fence | None = None, watermarks: dict[str, int] | None = None
    ) -> None:
        if not failures:
            failures.append("events insert failed after the totals insert")
            raise RuntimeError(failures[-1])
        insert_events(self, after=after, fence=fence, watermarks=watermarks)

    monkeypatch.setattr(SpendStore, "insert_events", failing_once)
    return failures


async def test_spend_of_a_flush_failed_after_its_totals_is_announced_and_blocks(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a key with a $0.50 budget and an aggregator whose first events insert fails
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set_many, [{"scope": f"key:{KEY}", "max_budget": "0.50"}])
    failures = fail_the_first_events_insert(monkeypatch)
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings, retry_backoff_s=0.1)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    over_budget = make_event(occurred_at=at(clock()), key_hash=KEY, cost=Decimal("0.60"))

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as enforcing:
            await eventually(enforcing.ready.is_set, bool, within=30, what="the enforcer judged every budget")
            # when the key spends over its budget in a flush that fails after its totals landed
            await produce(kafka_broker, topics.events, [over_budget.to_json()])
            block = await eventually(
                lambda: gateway.blocking(RequestIdentity(key_hash=KEY).budget_keys("gpt-4o-mini"), now=at(clock())),
                bool,
                within=30,
                what="the key blocked at the gateway",
            )
        announced = await read_topic(kafka_broker, topics.flushes, expected=1)

    # then the failure happened, the spend is counted once, announced, and the key is blocked
    assert failures
    assert counted_events(clickhouse) == 1
    assert totals(clickhouse)[("key", KEY, "")] == Decimal("0.60")
    scopes = {ref for record in announced for ref in ScopesFlushed.model_validate_json(record.value or b"").scopes}
    assert ScopeRef(type="key", id=KEY) in scopes
    assert block.scope == f"key:{KEY}"
