"""The aggregator's readiness and shutdown around its intake, with stand-ins for ClickHouse and
the consumer (no broker, no database): what /readyz says after a failed flush and a rebalance,
and a clean stop after the intake ended with an error."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import NoReturn

import pytest
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Gauge

from spendpipe.aggregator import app
from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.intake import Flushed
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.offsets import PartitionOffsets
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import SourceRecord
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.support.intake import HeldFlushes, StandInConsumer
from tests.support.waiting import eventually

P0 = TopicPartition("spend.events", 0)


def _value_of(gauge: Gauge) -> float:
    """What a scrape reads of an unlabelled gauge."""
    (metric,) = gauge.collect()
    return metric.samples[0].value


class _Unreachable:
    """A ClickHouse client whose every call fails, as when the server is away."""

    def __getattr__(self, name: str) -> NoReturn:
        raise ConnectionError(f"ClickHouse is unreachable (called {name})")

    def close(self) -> None:
        return None


class _Consumer:
    """What the aggregator asks of its consumer outside the intake: the group's generation
    (`ownership.group_generation`) and `stop`."""

    def __init__(self) -> None:
        self._coordinator = SimpleNamespace(generation=1)
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


class _BrokenConsumer(_Consumer):
    """Joins nothing, and its reads fail with an error that is not Kafka's (a bug, say): the
    intake ends with it."""

    def subscribe(self, topics: list[str], listener: object) -> None:
        return None

    async def start(self) -> None:
        return None

    async def read(self, **_: object) -> NoReturn:
        raise RuntimeError("not a Kafka error")


@pytest.fixture
async def aggregator() -> AsyncIterator[Aggregator]:
    clickhouse = ClickhouseStore(client=_Unreachable(), settings=ClickhouseSettings())
    aggregator = Aggregator(
        settings=AggregatorSettings.model_construct(gc_young_threshold=0),
        broker=KafkaBroker(),
        clickhouse=clickhouse,
        metrics=AggregatorMetrics(registry=CollectorRegistry()),
    )
    try:
        yield aggregator
    finally:
        await aggregator.stop()
        clickhouse.close()


async def a_failed_flush(aggregator: Aggregator) -> list[SourceRecord]:
    """Partition 0 assigned, and a flush of one record of it that fails (the store is down);
    returns the batch, for its retry."""
    aggregator._consumer = _Consumer()
    await aggregator.intake.on_partitions_revoked([])
    await aggregator.intake.on_partitions_assigned([P0])
    records = [SourceRecord(partition=0, offset=0, value=b"{}")]
    assert await aggregator._flush(records, PartitionOffsets.of(records)) is Flushed.FAILED
    return records


async def test_a_failed_flush_holds_readiness_only_until_the_group_reassigns(aggregator: Aggregator) -> None:
    await a_failed_flush(aggregator)
    assert (aggregator.not_ready() or "").startswith("the last flush failed, retrying: ConnectionError")
    # the group moves the partition to another aggregator, which reads the failed batch again:
    # this one has no failed flush left to retry
    await aggregator.intake.on_partitions_revoked([P0])
    await aggregator.intake.on_partitions_assigned([])
    assert aggregator.not_ready() == aggregator.progress.not_ready()


async def test_a_failed_flush_whose_retry_is_fenced_says_readiness_waits_for_the_group(aggregator: Aggregator) -> None:
    records = await a_failed_flush(aggregator)
    # the group takes the partition away before the retry writes: the retry is fenced (here it
    # holds no claim; another owner's claim is refused the same way)
    await aggregator.intake.on_partitions_revoked([P0])
    assert await aggregator._flush(records, PartitionOffsets.of(records)) is Flushed.OWNERSHIP_LOST
    assert aggregator.not_ready() == (
        "waiting for the group to reassign partitions: no partitions claimed (a rebalance is under way)"
    )


async def test_a_retry_reading_further_holds_readiness_and_names_what_it_waits_for(aggregator: Aggregator) -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    aggregator.intake._flush = flushes  # the writer sends the retry back, as `BatchWriter` does
    consumer.append(1, 6)
    consumer.away = {1}  # the leader of partition 1 is away: the retry waits for it
    consumer.append(0, 3)
    flushes.further = [{1: 4}]
    flushes.release.set()
    awaited = aggregator._metrics.partitions_awaited
    running = asyncio.create_task(aggregator.intake.run(consumer))
    try:
        waiting = await eventually(
            aggregator.not_ready, lambda s: "further" in (s or ""), within=5, what="the retry to wait for partition 1"
        )
        assert waiting == "a retry waits for spend.events to be read further: partition 1 through offset 4"
        assert _value_of(awaited) == 1
        consumer.away = set()
        consumer.arrived.set()
        await eventually(lambda: consumer.commits, bool, within=5, what="the retry to be written")
        assert aggregator.not_ready() == aggregator.progress.not_ready()
        assert _value_of(awaited) == 0
    finally:
        running.cancel()


async def test_stop_leaves_the_group_cleanly_after_the_intake_ended_with_an_error(
    aggregator: Aggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[_BrokenConsumer] = []

    def consumer(**_: object) -> _BrokenConsumer:
        made.append(_BrokenConsumer())
        return made[-1]

    monkeypatch.setattr(app, "TolerantConsumer", consumer)
    await aggregator.start()
    stopped = await eventually(
        aggregator.not_ready, lambda s: "stopped" in (s or ""), within=5, what="the intake to end"
    )
    assert stopped == "the intake of spend.events stopped: RuntimeError('not a Kafka error')"
    await aggregator.stop()  # the error was the intake's, logged as it ended: the stop goes on
    assert made[0].stopped
