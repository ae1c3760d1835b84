"""Several aggregators in one consumer group, in one process over one embedded store (how the
fencing tests run them), against one aggregator on the same kind of backlog in the same run:
events/s from the start of the aggregators (their group joins included, for both) to the last
event written, with the fence in every insert. On this machine's 2 cores the instances share
one interpreter and one chDB engine, so this measures what fencing, rebalances and sharing cost,
not how far more processes on more cores scale.

The members start together, as a deployment's replicas do: started one after another, each
join waits for the members already in the group to hear of it at their next heartbeat (a third
of `session_timeout_ms`, 3.3 s by default), and the first member had counted the whole backlog
alone before the second joined. Both measured runs come after a discarded one on the same
engine (`WARM_UP`): a chDB engine's first inserts run at a third to a half of the later ones'
pace, a start neither side should be measured with. The note gives, for each side, when the
first events were counted (the joins and the first flush), the rate from then on, and how many
each member counted: on a backlog of 200,000 the joins are a large part of either side's time.

`make bench` runs it in a process of its own (chDB holds one engine directory per process):
`python -m benchmarks.fleet_throughput <bootstrap> <workdir> <events>` prints the rows as JSON.
"""

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from benchmarks.own_process import rows_of
from benchmarks.traffic import spread_event, written_exactly
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
WARM_UP = 20_000


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


@dataclass(frozen=True)
class Counted:
    rate: float
    """Events/s from the members' start to the last event written."""
    first_s: float
    """Seconds from their start to the first events counted: the joins and the first flush."""
    after_first: float | None
    """Events/s from the first events counted to the last written (None: all were counted at once)."""
    shares: list[int]
    """Events each member counted."""

    def describe(self) -> str:
        after = "all at once" if self.after_first is None else f"{self.after_first:,.0f}/s"
        return (
            f"{self.rate:,.0f}/s from the start, first counted after {self.first_s:.1f} s, then {after};"
            f" per member {self.shares}"
        )


async def _count(bootstrap: str, clickhouse: ClickhouseSettings, instances: int, events: int) -> Counted:
    """`instances` aggregators in one group on a fresh backlog of `events`."""
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
        await asyncio.gather(*(_start(aggregator, broker) for aggregator, broker, _, _ in members))
        first: tuple[float, int] | None = None
        while (counted := sum(_counted(m) for *_, m in members)) < events:
            if first is None and counted:
                first = (time.perf_counter() - started, counted)
            await asyncio.sleep(0.05)
        await written_exactly(members[0][2], events)  # the last flush's copy into `events` included
        elapsed = time.perf_counter() - started
    finally:
        for aggregator, broker, store, _ in members:
            await aggregator.stop()
            await broker.stop()
            store.close()
    shares = [_counted(m) for *_, m in members]
    if first is None:
        return Counted(events / elapsed, elapsed, None, shares)
    first_s, first_counted = first
    return Counted(events / elapsed, first_s, (events - first_counted) / (elapsed - first_s), shares)


async def _start(aggregator: Aggregator, broker: KafkaBroker) -> None:
    await broker.start()
    await aggregator.start()


def _counted(metrics: AggregatorMetrics) -> int:
    return int(metrics.counted._value.get())


def rows(single: Counted, fleet: Counted, events: int) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": f"aggregator: {FLEET} in one group and process, {events:,} events, {PARTITIONS} partitions",
            "unit": "events/s",
            "p50": fleet.rate,
            "p99": fleet.rate,
            "goal": "beside one aggregator",
            "met": None,
            "note": (
                f"{FLEET} aggregators: {fleet.describe()}; one aggregator on the same backlog in the same run:"
                f" {single.describe()} ({fleet.rate / single.rate:.2f}x)"
            ),
        }
    ]


def run(bootstrap: str, workdir: Path, events: int) -> list[dict[str, Any]]:
    """In a process of its own (see the module's docstring)."""
    return rows_of("benchmarks.fleet_throughput", bootstrap, str(workdir / "fleet"), str(events))


def main() -> None:
    bootstrap, workdir, events = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    workdir.mkdir(parents=True, exist_ok=True)
    clickhouse = ClickhouseSettings(dsn=f"chdb://{workdir / 'clickhouse'}", database="fleet")
    asyncio.run(_count(bootstrap, clickhouse, 1, WARM_UP))
    single = asyncio.run(_count(bootstrap, clickhouse, 1, events))
    fleet = asyncio.run(_count(bootstrap, clickhouse, FLEET, events))
    print(json.dumps(rows(single, fleet, events)))


if __name__ == "__main__":
    main()
