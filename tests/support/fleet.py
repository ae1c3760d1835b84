"""Several aggregators in one test process, one consumer group, one store: each with its own
ClickHouse client (its own session, so its own stage tables), its own consumer and broker
connection, as separate processes would have them. chDB lets one process hold a directory, so
this is how several aggregators over one chDB store can run at all."""

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.intake import Flushed
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.offsets import PartitionOffsets
from spendpipe.aggregator.ownership import OWNERS_TABLE, Fence
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import KafkaRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.clickhouse import ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import build_broker


class Member:
    """One aggregator of the fleet; `start`/`stop` whenever the test likes."""

    def __init__(self, name: str, settings: AggregatorSettings) -> None:
        self.name = name
        self.metrics = AggregatorMetrics(registry=CollectorRegistry())
        self._settings = settings
        self._clickhouse: ClickhouseStore | None = None
        self._broker: KafkaBroker | None = None
        self.aggregator: Aggregator | None = None

    async def start(self) -> None:
        self._clickhouse = connect_clickhouse(self._settings.clickhouse)
        self._broker = build_broker(self._settings.kafka)
        self.aggregator = Aggregator(
            settings=self._settings, broker=self._broker, clickhouse=self._clickhouse, metrics=self.metrics
        )
        await self._broker.start()
        await self.aggregator.start()

    async def stop(self) -> None:
        if self.aggregator is not None:
            await self.aggregator.stop()
        if self._broker is not None:
            await self._broker.stop()
        if self._clickhouse is not None:
            self._clickhouse.close()
        self.aggregator = self._broker = self._clickhouse = None

    def stall(self) -> "Stall":
        """Hold this member's next flush before it writes (a pause, a network that lets Kafka go
        but not ClickHouse)."""
        assert self.aggregator is not None
        intake = self.aggregator.intake
        flush = intake._flush
        stall = Stall()

        async def held(records: Sequence[KafkaRecord], offsets: PartitionOffsets) -> Flushed:
            if stall.stalled.is_set():
                return await flush(records, offsets)
            assert self.aggregator is not None
            fence = self.aggregator.ownership.fence
            stall.stalled.set()
            await stall.release.wait()
            if fence is not None:
                stall.moved_on = await asyncio.to_thread(self._claimed_by_others, fence, records)
            stall.result = await flush(records, offsets)
            return stall.result

        intake._flush = held
        return stall

    def _claimed_by_others(self, fence: Fence, records: Sequence[KafkaRecord]) -> bool:
        """Whether another member holds the highest claim of a partition of `records` now."""
        clickhouse = connect_clickhouse(self._settings.clickhouse)
        try:
            owners = clickhouse.column(
                f"SELECT argMax(owner, epoch) FROM {OWNERS_TABLE} WHERE consumer_group = {{group:String}} "
                "AND topic = {topic:String} AND has({partitions:Array(UInt32)}, kafka_partition) "
                "GROUP BY kafka_partition",
                {
                    "group": fence.group,
                    "topic": fence.topic,
                    "partitions": sorted({record.partition for record in records}),
                },
            )
        finally:
            clickhouse.close()
        mine = self.aggregator.ownership.owner if self.aggregator else ""
        return any(owner != mine for owner in owners)

    @property
    def counted(self) -> float:
        return float(self.metrics.counted._value.get())

    @property
    def ownership_lost(self) -> float:
        return float(self.metrics.ownership_lost._value.get())


class Stall:
    def __init__(self) -> None:
        self.stalled = asyncio.Event()
        """A flush is held."""
        self.release = asyncio.Event()
        """Set to let it write."""
        self.result: Flushed | None = None
        """What the held flush returned, once it did."""
        self.moved_on: bool | None = None
        """Whether, when the flush was let go, another member held the highest claim of one of its
        partitions (None: it held no claim when it stalled)."""


@contextlib.asynccontextmanager
async def fleet(settings: AggregatorSettings, size: int) -> AsyncIterator[list[Member]]:
    """`size` members, not started; every started one is stopped at the end."""
    members = [Member(f"aggregator-{i}", settings) for i in range(size)]
    try:
        yield members
    finally:
        for member in members:
            await member.stop()


class Stream:
    """Produces events to the topic's partitions in turn, a chunk at a time, until stopped;
    keeps every event it produced (acknowledged by the broker) for the totals to check."""

    def __init__(self, bootstrap: str, topic: str, make: Callable[[], SpendEvent], chunk: int = 50) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._make = make
        self._chunk = chunk
        self.events: list[SpendEvent] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Stream":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def count(self) -> int:
        """Events produced so far; raises what stopped the producer, if it stopped by an error."""
        if self._task is not None and self._task.done():
            self._task.result()
        return len(self.events)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", metadata_max_age_ms=500)
        await producer.start()
        try:
            turn = itertools.count()
            while not self._stop.is_set():
                partitions = sorted(producer.client.cluster.partitions_for_topic(self._topic) or {0})
                chunk = [self._make() for _ in range(self._chunk)]
                sent = [
                    await producer.send(
                        self._topic, event.to_json(), partition=partitions[next(turn) % len(partitions)]
                    )
                    for event in chunk
                ]
                await asyncio.gather(*sent)
                self.events.extend(chunk)
                with contextlib.suppress(TimeoutError):  # a steady stream, not a burst, until stopped
                    await asyncio.wait_for(self._stop.wait(), timeout=0.02)
        finally:
            await producer.stop()


async def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()
