"""A flush that fails after its totals landed is read again: the retry adds nothing to the
totals, but it still announces the spend, so the enforcer judges it and blocks. Two places to
fail: reading what the totals hold of the batch (right after the totals insert, before anything
is announced: only the retry can announce), and the copy into `events` (after the announcement:
the block stands and the retry copies the events)."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.store import SpendStore
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import (
    ManualClock,
    counted_events,
    events_counted,
    produce,
    read_topic,
    running_pipeline,
    totals,
)
from tests.support.waiting import eventually

KEY = f"{0xC0FFEE:064x}"


def fail_once(monkeypatch: pytest.MonkeyPatch, step: str) -> list[str]:
    """Make the first call of `SpendStore.<step>` raise. Every flush's totals go in before
    either step: its failure leaves the totals in ClickHouse and the offsets uncommitted.
    Returns the failures, as they happen."""
    failures: list[str] = []
    original = getattr(SpendStore, step)

    def failing_once(self: SpendStore, **arguments: Any) -> Any:
        if not failures:
            failures.append(f"{step} failed after the totals insert")
            raise RuntimeError(failures[-1])
        return original(self, **arguments)

    monkeypatch.setattr(SpendStore, step, failing_once)
    return failures


@pytest.mark.parametrize("step", ["written", "insert_events"])
async def test_spend_of_a_flush_failed_after_its_totals_is_announced_and_blocks(
    step: str,
    kafka_broker: str,
    *,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a key with a $0.50 budget and an aggregator whose first `step` after the totals fails
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime.now(UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set_many, [{"scope": f"key:{KEY}", "max_budget": "0.50"}])
    failures = fail_once(monkeypatch, step)
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
            # (a block may go out before the events are copied: wait for the retry to copy them)
            await events_counted(clickhouse, 1, within=30)
        announced = await read_topic(kafka_broker, topics.flushes, expected=1)

    # then the failure happened, the spend is counted once, announced, and the key is blocked
    assert failures
    assert counted_events(clickhouse) == 1
    assert totals(clickhouse)[("key", KEY, "")] == Decimal("0.60")
    scopes = {ref for record in announced for ref in ScopesFlushed.model_validate_json(record.value or b"").scopes}
    assert ScopeRef(type="key", id=KEY) in scopes
    assert block.scope == f"key:{KEY}"
