"""/healthz, /readyz and /metrics of each service on the real broker and chDB: not ready before
the consumer or the block list has caught up and ready after; metrics that move exactly with
the events and the dead letters."""

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewayOpsSettings, GatewaySettings
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.ops import TcpGate, get, metric, off_loop, readiness, serving_aggregator
from tests.support.pipeline import produce
from tests.support.processes import run_all
from tests.support.waiting import eventually

T = TypeVar("T")
MALFORMED = b'{"event_id": "x", "cost": "not money'


class HeldStore:
    """The aggregator's ClickHouse with every flush held until `release` is set: the consumer
    cannot get past its backlog, so "not caught up yet" is a state the test can observe."""

    def __init__(self, store: ClickhouseStore) -> None:
        self._store = store
        self.release = asyncio.Event()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.release.wait()
        return await self._store.run(fn, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_aggregator_is_ready_once_its_backlog_is_counted_and_metrics_follow_the_events(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given a backlog of 300 events waiting on two partitions, and ClickHouse holding every flush
    topics = await make_topics(kafka_broker, 2)
    await produce(kafka_broker, topics.events, [make_event().to_json() for _ in range(300)])
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings, batch_size=100)
    held = HeldStore(clickhouse)

    async with serving_aggregator(settings, cast(ClickhouseStore, held)) as ops:
        # then it is alive, but not ready while the backlog is not counted
        assert await off_loop(lambda: get(f"{ops}/healthz")) == (200, "ok\n")
        status, body = await eventually(
            lambda: off_loop(lambda: readiness(ops)),
            lambda answer: "300 records" in answer[1]["checks"]["aggregator"],
            within=60,
            what="the aggregator to see its backlog",
        )
        assert status == 503
        assert body == {
            "ready": False,
            "checks": {"aggregator": f"300 records of {topics.events} behind the end offsets seen at start"},
        }
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_consumer_lag")) == 300

        # when ClickHouse takes the flushes
        held.release.set()

        # then it is ready once the backlog is committed, and the metrics say so
        await eventually(
            lambda: off_loop(lambda: readiness(ops)), lambda answer: answer[0] == 200, within=60, what="ready"
        )
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_aggregator_consumer_lag")),
            lambda lag: lag == 0,
            within=30,
            what="no lag",
        )
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_messages_consumed_total")) == 300
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_events_counted_total")) == 300
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_dead_letters_total")) == 0

        # when 25 more events and one malformed message arrive
        await produce(kafka_broker, topics.events, [make_event().to_json() for _ in range(25)] + [MALFORMED])

        # then consumed rises by exactly what was sent, and the dead letter by one
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_aggregator_events_counted_total")),
            lambda counted: counted >= 325,
            within=60,
            what="325 events counted",
        )
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_aggregator_consumer_lag")),
            lambda lag: lag == 0,
            within=30,
            what="no lag after the new events",
        )
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_messages_consumed_total")) == 326
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_events_counted_total")) == 325
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_dead_letters_total")) == 1
        # a flush's duration is observed as it ends, after its events are counted (and the lag
        # gauge may still hold the 0 of the look before the new events): waited for, not read
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_aggregator_flush_seconds_count")),
            lambda flushes: flushes >= 4,  # the backlog in batches of at most 100, then the new ones
            within=30,
            what="every flush's duration observed",
        )
        assert (await off_loop(lambda: readiness(ops)))[0] == 200


async def test_gateway_is_ready_once_its_block_list_has_caught_up(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    # given a gateway whose broker is not reachable yet
    topics = await make_topics(kafka_broker, 1)
    gate = TcpGate(port=free_port_pair(), target=kafka_broker)
    settings = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers=gate.address),
        topics=topics,
        spool_dir=tmp_path / "spool",
        ops=GatewayOpsSettings(enabled=True, port=0),
    )
    plugin = SpendpipeLogger.from_settings(settings)
    plugin.start()
    try:
        ops = plugin.ops.url
        # then it is alive and serves its metrics, but is not ready
        assert await off_loop(lambda: get(f"{ops}/healthz")) == (200, "ok\n")
        status, body = await off_loop(lambda: readiness(ops))
        assert (status, body) == (
            503,
            {
                "ready": False,
                "checks": {
                    "blocklist": "reading the decisions topic to its end",
                    "limits": "reading the rate limits (the budgets topic) to its end",
                },
            },
        )
        assert await off_loop(lambda: metric(ops, "spendpipe_gateway_blocklist_in_sync")) == 0
        assert await off_loop(lambda: metric(ops, "spendpipe_gateway_events_lost_total")) == 0

        # when the broker becomes reachable
        await gate.open()

        # then the block list and the rate limits catch up and the gateway is ready
        await eventually(
            lambda: off_loop(lambda: readiness(ops)), lambda answer: answer[0] == 200, within=60, what="ready"
        )
        assert (await off_loop(lambda: readiness(ops)))[1] == {
            "ready": True,
            "checks": {"blocklist": "ready", "limits": "ready"},
        }
        assert await off_loop(lambda: metric(ops, "spendpipe_gateway_blocklist_in_sync")) == 1
    finally:
        await asyncio.to_thread(plugin.close, 30)
        await gate.close()

    # and close() stops the server
    try:
        await off_loop(lambda: get(f"{ops}/healthz"))
        raise AssertionError("the ops server still answers after close()")
    except OSError:
        pass


async def test_run_all_serves_health_readiness_and_metrics(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    # given `spendpipe run all` as a deployment runs it, with a team budget of $1
    topics = await make_topics(kafka_broker)
    ops_port, sql_port = free_port_pair(), free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=sql_port, ops_port=ops_port)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo"})
    ops = f"http://127.0.0.1:{ops_port}"

    service.start()
    try:
        # then it is alive, and ready once ClickHouse, the aggregator and the enforcer are
        await off_loop(lambda: service.wait_http_ok(f"{ops}/healthz"))
        _, body = await eventually(
            lambda: off_loop(lambda: readiness(ops)), lambda answer: answer[0] == 200, within=90, what="ready"
        )
        assert body == {"ready": True, "checks": {"clickhouse": "ready", "aggregator": "ready", "enforcer": "ready"}}

        # when four $0.30 events of the team and a malformed message arrive
        events = [make_event(team_id="eng", cost=Decimal("0.30")) for _ in range(4)]
        await produce(kafka_broker, topics.events, [e.to_json() for e in events] + [MALFORMED])

        # then the counters move by exactly that, and the block is counted as published
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_enforcer_decisions_published_total", action="block")),
            lambda published: published >= 1,
            within=60,
            what="a block decision published",
        )
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_messages_consumed_total")) == 5
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_events_counted_total")) == 4
        assert await off_loop(lambda: metric(ops, "spendpipe_aggregator_dead_letters_total")) == 1
        # (the block goes out while the flush copies its events: its duration is observed after)
        await eventually(
            lambda: off_loop(lambda: metric(ops, "spendpipe_aggregator_flush_seconds_count")),
            lambda flushes: flushes >= 1,
            within=30,
            what="the flush's duration observed",
        )
    finally:
        await asyncio.to_thread(service.stop)

    assert service.process is not None
    assert service.process.returncode == 0, service.log_tail()
