"""Running pipeline parts inside the test process against the real broker and chDB."""

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.kafka import build_broker


@contextlib.asynccontextmanager
async def running_aggregator(
    settings: AggregatorSettings, clickhouse: ClickhouseStore
) -> AsyncIterator[tuple[Aggregator, AggregatorMetrics]]:
    broker: KafkaBroker = build_broker(settings.kafka)
    metrics = AggregatorMetrics(registry=CollectorRegistry())
    aggregator = Aggregator(settings=settings, broker=broker, clickhouse=clickhouse, metrics=metrics)
    await broker.start()
    try:
        yield aggregator, metrics
    finally:
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
    Aggregator(settings=aggregator, broker=broker, clickhouse=clickhouse, metrics=metrics)
    service = EnforcerService(settings=enforcer, broker=broker, clickhouse=clickhouse, clock=clock)
    await broker.start()
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await broker.stop()


async def produce(bootstrap: str, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value=value, key=key) for value in values]
        for future in pending:
            await future
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Every record of `topic`, from the beginning to its end at the time of the last fetch, once
    at least `expected` records are there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(partitions)
            positions = [await consumer.position(p) for p in partitions]
            at_end = all(position >= ends[p] for position, p in zip(positions, partitions, strict=True))
            if at_end and len(records) >= expected:
                break
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(int(p["partition"]) for p in description["partitions"])
    assert numbers, f"topic {topic} has no partitions"
    return numbers


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
