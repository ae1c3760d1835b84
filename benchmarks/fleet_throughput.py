"""Several aggregators in one consumer group, in one process over one embedded store (how the
fencing tests run them), against one aggregator on the same kind of backlog in the same run:
events/s from the start of the aggregators (their group joins included, for both) to the last
event counted, with the fence in every insert. On this machine's 2 cores the instances share
one interpreter and one chDB engine, so this measures what fencing, rebalances and sharing cost,
not how far more processes on more cores scale.

`make bench` runs it in a process of its own (chDB holds one engine directory per process):
`python -m benchmarks.fleet_throughput <bootstrap> <workdir> <events>` prints the rows as JSON.
"""

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from benchmarks.own_process import rows_of
from benchmarks.traffic import spread_event
from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.topics import Topics
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.platform.kafka_topics import ensure_topics
from spendpipe.store.migrate import migrate
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings

PARTITIONS = 6
FLEET = 3


async def _backlog(bootstrap: str, topic: str, events: int) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [NewTopic(topic, PARTITIONS, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1)
    await producer.start()
    try:
        now, pending = time.time(), []
        for n in range(events):
            event = spread_event(
                n, event_id=str(uuid.uuid4()), occurred_at=now, keys=500, users=200, teams=20, gateway_id="bench"
            )
            pending.append(await producer.send(topic, event.to_json(), partition=n % PARTITIONS))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _count(bootstrap: str, clickhouse: ClickhouseSettings, instances: int, events: int) -> float:
    """Events/s of `instances` aggregators in one group on a fresh backlog of `events`."""
    topics = Topics(events=f"bench-fleet-{uuid.uuid4().hex[:8]}")
    await _backlog(bootstrap, topics.events, events)
    settings = AggregatorSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        clickhouse=clickhouse.model_copy(update={"database": f"fleet_{uuid.uuid4().hex[:8]}"}),
        group_id=f"bench-fleet-{uuid.uuid4().hex[:8]}",
        sql_endpoint=SqlEndpointSettings(enabled=False),
    )
    schema = connect_clickhouse(settings.clickhouse)
    migrate(schema)
    schema.close()
    members: list[tuple[Aggregator, KafkaBroker, ClickhouseStore, AggregatorMetrics]] = []
    for _ in range(instances):
        store, broker = connect_clickhouse(settings.clickhouse), build_broker(settings.kafka)
        metrics = AggregatorMetrics(registry=CollectorRegistry())
        aggregator = Aggregator(settings=settings, broker=broker, clickhouse=store, metrics=metrics)
        members.append((aggregator, broker, store, metrics))
    try:
        started = time.perf_counter()
        for aggregator, broker, _, _ in members:
            await broker.start()
            await aggregator.start()
        while sum(m.counted._value.get() for *_, m in members) < events:  # noqa: ASYNC110 - counters, no event
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        store = members[0][2]
        assert int(store.rows("SELECT count() FROM events")[0][0]) == events
    finally:
        for aggregator, broker, store, _ in members:
            await aggregator.stop()
            await broker.stop()
            store.close()
    return events / elapsed


def rows(single: float, fleet: float, events: int) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": f"aggregator: {FLEET} in one group and process, {events:,} events, {PARTITIONS} partitions",
            "unit": "events/s",
            "p50": fleet,
            "p99": fleet,
            "goal": "beside one aggregator",
            "met": None,
            "note": f"one aggregator on the same backlog in the same run: {single:,.0f}/s ({fleet / single:.2f}x)",
        }
    ]


def run(bootstrap: str, workdir: Path, events: int) -> list[dict[str, Any]]:
    """In a process of its own (see the module's docstring)."""
    return rows_of("benchmarks.fleet_throughput", bootstrap, str(workdir / "fleet"), str(events))


def main() -> None:
    bootstrap, workdir, events = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    workdir.mkdir(parents=True, exist_ok=True)
    clickhouse = ClickhouseSettings(dsn=f"chdb://{workdir / 'clickhouse'}", database="fleet")
    single = asyncio.run(_count(bootstrap, clickhouse, 1, events))
    fleet = asyncio.run(_count(bootstrap, clickhouse, FLEET, events))
    print(json.dumps(rows(single, fleet, events)))


if __name__ == "__main__":
    main()
