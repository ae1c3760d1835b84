"""The Kafka broker stopped while the plugin keeps recording, then restarted: every event
arrives, exactly once (guarantee 1: spool and deliver later; guarantee 2: dedup)."""

import asyncio
from decimal import Decimal
from pathlib import Path

import litellm

from dev.local_kafka import LocalBroker
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.gateway import sdk_plugin
from tests.support.pipeline import counted_events, events_counted, running_aggregator, totals
from tests.support.waiting import eventually


async def calls(n: int, phase: str) -> list[Decimal]:
    responses = await asyncio.gather(
        *(
            litellm.acompletion(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"{phase} {i}"}],
                mock_response=f"answer {i} " * (1 + i % 5),
                metadata={"user_api_key_team_id": f"team-{phase}"},
            )
            for i in range(n)
        )
    )
    return [cost_from_float(r._hidden_params["response_cost"]) for r in responses]


async def test_events_recorded_during_a_broker_outage_arrive_exactly_once(
    own_broker: LocalBroker,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    topics = await make_topics(own_broker.bootstrap)
    settings = aggregator_settings(own_broker.bootstrap, topics, clickhouse_settings)
    spool = tmp_path / "spool"
    with sdk_plugin(own_broker.bootstrap, topics, spool, delivery_timeout_s=3.0, retry_backoff_s=0.5) as plugin:
        metrics = plugin.metrics

        # given a running pipeline that has counted some traffic
        async with running_aggregator(settings, clickhouse):
            costs = await calls(40, "before")
            await events_counted(clickhouse, 40, within=60)

        # when the broker goes away while calls keep being recorded
        own_broker.stop()
        costs += await calls(120, "during")
        await eventually(metrics.recorded._value.get, lambda n: n >= 160, within=30, what="160 recorded")
        await eventually(
            lambda: GatewayMetrics.total(metrics.spooled),
            lambda n: n >= 120,
            within=60,
            what="spooled",
        )
        assert any(path.name != "spool.lock" for path in spool.iterdir()), "events of the outage wait on disk"

        # and comes back
        own_broker.start()
        costs += await calls(40, "after")
        async with running_aggregator(settings, clickhouse):
            await events_counted(clickhouse, 200, within=120)
            assert await asyncio.to_thread(plugin.publisher.wait_idle, 60), "spool drained"

        # then every call is counted exactly once, to the last digit
        assert counted_events(clickhouse) == 200
        spend = totals(clickhouse)
        assert spend[("global", "", "")] == sum(costs)
        assert spend[("team", "team-during", "")] == sum(costs[40:160])
        assert GatewayMetrics.total(metrics.lost) == 0
        assert plugin.publisher._spool.empty
