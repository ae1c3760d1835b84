"""A judgement that fails after it decided, on the real broker and chDB with the real enforcer and a
gateway's block list: ClickHouse is lost between a flush judgement's first query (the budget's
spend, which decides the block) and its next (the rate limit's). The block the enforcer now holds
still reaches the gateway: judged again, it is in force and nothing new is decided, so without the
tick sending it the gateway would never refuse the scope. A start that fails after it decided
ends the process, and the next start decides the same again."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.rate_limits import RateLimit
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.rate_reader import RateReader, RateUsage
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings, build_broker
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist
from tests.support.pipeline import ManualClock, produce, read_topic, running_aggregator, running_pipeline, totals
from tests.support.processes import run_all, run_cli
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


async def test_a_block_decided_by_a_start_that_then_failed_is_decided_again_by_the_next_start(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    budget = {"scope": "team:eng", "max_budget": "5.00", "budget_duration": "1mo", "rpm_limit": 1000}
    await asyncio.to_thread(admin.set, budget)
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    # given team eng's spend of $1.10 counted, under its cap, and the cap lowered to $1 while no
    # enforcer runs
    async with running_aggregator(aggregator, clickhouse):
        event = make_event(occurred_at=at(clock()), cost=Decimal("1.10"), team_id="eng")
        await produce(kafka_broker, topics.events, [event.to_json()])
        await eventually(
            lambda: asyncio.to_thread(totals, clickhouse, "month"),
            lambda spent: spent.get(("team", "eng", "")) == Decimal("1.10"),
            within=30,
            what="team eng's spend counted",
        )
    await asyncio.to_thread(admin.set, budget | {"max_budget": "1.00"})

    # when an enforcer starts, decides the block while evaluating every budget, and loses
    # ClickHouse before the same evaluation's rate query: its start fails, the process ends
    broker = build_broker(enforcer.kafka)
    failed = EnforcerService(settings=enforcer, broker=broker, clickhouse=clickhouse, clock=clock)
    rates = LostRates(clickhouse=clickhouse)
    failed.enforcer._rates, rates.lost = rates, True
    await broker.start()
    try:
        with pytest.raises(ConnectionError):
            await failed.start()
    finally:
        await failed.stop()
        await broker.stop()
    put_aside = failed.enforcer.last("team:eng")
    assert put_aside is not None, "the failed start decided nothing: the test missed its point"
    assert put_aside.blocked
    assert failed.enforcer.take_unsent() == {"team:eng"}  # put aside for a tick that never came
    assert await read_topic(kafka_broker, topics.decisions, expected=0) == []  # never sent

    # then the next process's start decides the block again, and it reaches the gateway
    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock) as service:
            blocked = await eventually(
                lambda: gateway.blocking(["team:eng"], now=at(clock())), bool, within=30, what="team:eng blocked"
            )
            assert blocked == service.enforcer.last("team:eng")
            assert (blocked.spend, blocked.cap) == (put_aside.spend, put_aside.cap) == (Decimal("1.1"), Decimal("1.00"))


async def test_a_failed_enforcer_start_ends_the_process(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    """What a failed start put aside (module docstring of `spendpipe.enforcer.app`) is decided
    again only if the process ends and the next one starts: `spendpipe run all` whose enforcer
    cannot start (its alerts topic is missing, read back after its decisions) exits, not ready
    and not running on."""
    topics = await make_topics(kafka_broker)
    missing = f"missing-{topics.alerts}"
    service = run_all(kafka_broker, topics, tmp_path, sql_port=free_port_pair())

    ended = await asyncio.to_thread(run_cli, {**service.env, "SPENDPIPE_TOPICS__ALERTS": missing}, "run", "all")

    assert ended.returncode == 1, ended.stderr
    assert ended.stderr.splitlines()[-1].startswith(f"error: RuntimeError: topic {missing} does not exist")
