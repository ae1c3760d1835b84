"""Running pipeline parts inside the test process against the real broker and chDB."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from decimal import Decimal

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.compacted import CompactedTopicReader, TopicRecord
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.store.sql_endpoint.client import SqlSource
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def running_aggregator(
    settings: AggregatorSettings, clickhouse: ClickhouseStore
) -> AsyncIterator[tuple[Aggregator, AggregatorMetrics]]:
    broker: KafkaBroker = build_broker(settings.kafka)
    metrics = AggregatorMetrics(registry=CollectorRegistry())
    aggregator = Aggregator(settings=settings, broker=broker, clickhouse=clickhouse, metrics=metrics)
    await broker.start()
    await aggregator.start()
    try:
        yield aggregator, metrics
    finally:
        await aggregator.stop()
        await broker.stop()


class ManualClock:
    """The enforcer's clock in tests: stands still until the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()


@contextlib.asynccontextmanager
async def running_pipeline(
    aggregator: AggregatorSettings,
    enforcer: EnforcerSettings,
    clickhouse: ClickhouseStore,
    clock: Callable[[], float],
) -> AsyncIterator[EnforcerService]:
    """Aggregator and enforcer in one broker, as `spendpipe run all` runs them."""
    broker: KafkaBroker = build_broker(aggregator.kafka)
    metrics = AggregatorMetrics(registry=CollectorRegistry())
    counting = Aggregator(settings=aggregator, broker=broker, clickhouse=clickhouse, metrics=metrics)
    service = EnforcerService(settings=enforcer, broker=broker, clickhouse=clickhouse, clock=clock)
    await broker.start()
    await counting.start()
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await counting.stop()
        await broker.stop()


async def produce(bootstrap: str, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
    await produce_records(bootstrap, topic, [(key, value) for value in values])


async def produce_records(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
    """(key, value) records, in order; a None value is a record without one."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value=value, key=key) for key, value in records]
        for future in pending:
            await future
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[TopicRecord]:
    """Every record of `topic`, from the beginning to its end as of the last look, once at least
    `expected` records are there; fails if they are not within `timeout_s`."""
    records: list[TopicRecord] = []
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    async with CompactedTopicReader(kafka=kafka, topic=topic, on_record=records.append) as reader:

        async def records_to_end() -> int:
            await reader.catch_up()
            return len(records)

        await eventually(
            records_to_end, lambda n: n >= expected, within=timeout_s, what=f"{expected} records on {topic}"
        )
    return records


async def committed_offset(bootstrap: str, topic: str, group_id: str, partition: int = 0) -> int | None:
    """The group's committed offset of one partition (the next record it will read), or None."""
    admin = AIOKafkaAdminClient(**KafkaSettings(bootstrap_servers=bootstrap).aiokafka_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    return committed.get((topic, partition))


def totals(clickhouse: ClickhouseStore, window: str = "day") -> dict[tuple[str, str, str], Decimal]:
    """{(scope_type, scope_id, model): spend} for one window kind, summed over window starts."""
    rows = clickhouse.rows(
        "SELECT scope_type, scope_id, model, sum(spend) FROM spend_totals "
        "WHERE window = {window:String} GROUP BY scope_type, scope_id, model",
        {"window": window},
    )
    return {(t, i, m): Decimal(s) for t, i, m, s in rows}


def counted_events(clickhouse: ClickhouseStore) -> int:
    return int(clickhouse.rows("SELECT count() FROM events")[0][0])


async def events_counted(clickhouse: ClickhouseStore, count: int, *, within: float = 60) -> None:
    """Wait until the store has counted at least `count` events."""
    await eventually(
        lambda: asyncio.to_thread(counted_events, clickhouse),
        lambda n: n >= count,
        within=within,
        what=f"{count} events counted",
    )


async def events_stored(source: SqlSource, count: int, *, within: float = 60) -> None:
    """Wait until a store read through `source` (the SQL endpoint of `run all`, say) holds
    exactly `count` events."""
    await eventually(
        lambda: asyncio.to_thread(source.query, "SELECT count() FROM events"),
        lambda result: int(result[1][0][0]) == count,
        within=within,
        what=f"{count} events stored",
    )
