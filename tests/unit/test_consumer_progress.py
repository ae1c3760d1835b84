"""The aggregator's readiness and lag gauge from the offsets its consumer reports."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.progress import ConsumerProgress
from tests.support.waiting import eventually

P0, P1 = TopicPartition("spend.events", 0), TopicPartition("spend.events", 1)


class Offsets:
    """What the consumer would read from the broker: end, log start and committed offsets."""

    def __init__(self) -> None:
        self.ends = {P0: 100, P1: 50}
        self.commits: dict[TopicPartition, int | None] = {P0: 40, P1: None}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {p: self.ends[p] for p in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.commits[partition]


@pytest.fixture
def metrics() -> AggregatorMetrics:
    return AggregatorMetrics(registry=CollectorRegistry())


@contextlib.asynccontextmanager
async def following(progress: ConsumerProgress, offsets: Offsets) -> AsyncIterator[None]:
    task = asyncio.create_task(progress.follow(lambda: cast(AIOKafkaConsumer, offsets)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def lag(metrics: AggregatorMetrics, partition: int) -> float:
    return float(metrics.consumer_lag.labels(str(partition))._value.get())


async def test_ready_once_the_backlog_seen_at_assignment_is_committed(metrics: AggregatorMetrics) -> None:
    progress = ConsumerProgress(topic="spend.events", lag=metrics.consumer_lag, interval_s=0.01)
    offsets = Offsets()

    async with following(progress, offsets):
        assert progress.not_ready() == "waiting for partitions of spend.events to be assigned"
        progress.assigned([P0, P1])
        await eventually(progress.not_ready, lambda s: s is not None and "110" in s, within=5, what="backlog")
        assert progress.not_ready() == "110 records of spend.events behind the end offsets seen at start"
        assert (lag(metrics, 0), lag(metrics, 1)) == (60, 50)

        offsets.ends = {P0: 130, P1: 50}  # new records do not move the target
        offsets.commits = {P0: 100, P1: 50}
        await eventually(progress.not_ready, lambda s: s is None, within=5, what="caught up")
        await eventually(lambda: lag(metrics, 0), lambda n: n == 30, within=5, what="lag of the new records")

        offsets.ends = {P0: 10_000, P1: 50}  # load after catching up shows as lag, not as not ready
        await eventually(lambda: lag(metrics, 0), lambda n: n == 9_900, within=5, what="lag under load")
        assert progress.not_ready() is None

    progress.revoked([P0, P1])
    assert [sample for family in metrics.consumer_lag.collect() for sample in family.samples] == []


async def test_no_partition_for_this_replica_is_nothing_to_catch_up(metrics: AggregatorMetrics) -> None:
    progress = ConsumerProgress(topic="spend.events", lag=metrics.consumer_lag, interval_s=0.01)

    async with following(progress, Offsets()):
        progress.assigned([])
        await eventually(progress.not_ready, lambda s: s is None, within=5, what="ready")


async def test_a_look_that_a_rebalance_overtook_leaves_no_gauge_for_revoked_partitions(
    metrics: AggregatorMetrics,
) -> None:
    progress = ConsumerProgress(topic="spend.events", lag=metrics.consumer_lag, interval_s=0.01)
    offsets = Offsets()
    progress.assigned([P0, P1])
    read_committed = offsets.committed

    async def committed_then_rebalanced(partition: TopicPartition) -> int | None:
        if partition == P1:  # the group takes both partitions away while the look is reading
            progress.revoked([P0, P1])
            progress.assigned([])
        return await read_committed(partition)

    offsets.committed = committed_then_rebalanced  # type: ignore[method-assign]
    async with following(progress, offsets):
        await eventually(progress.not_ready, lambda s: s is None, within=5, what="ready with no partitions")

    assert [sample for family in metrics.consumer_lag.collect() for sample in family.samples] == []


async def test_a_look_in_flight_as_partitions_are_revoked_sets_no_gauge_before_the_next_assignment(
    metrics: AggregatorMetrics,
) -> None:
    """Between a revocation and the next assignment the look in flight must not bring back the
    series the revocation removed: the partitions may go to another aggregator, and a stale lag
    here would add to the fleet's and keep the flushes-stale alert armed."""
    progress = ConsumerProgress(topic="spend.events", lag=metrics.consumer_lag, interval_s=0.01)
    offsets = Offsets()
    progress.assigned([P0, P1])
    read_committed = offsets.committed
    looks = 0
    revoked_in_look: int | None = None

    async def committed_then_revoked(partition: TopicPartition) -> int | None:
        nonlocal revoked_in_look
        if partition == P1 and revoked_in_look is None:  # the rebalance begins while the look reads
            progress.revoked([P0, P1])
            revoked_in_look = looks
        return await read_committed(partition)

    def consumer_of() -> AIOKafkaConsumer:
        nonlocal looks
        looks += 1
        return cast(AIOKafkaConsumer, offsets)

    offsets.committed = committed_then_revoked  # type: ignore[method-assign]
    task = asyncio.create_task(progress.follow(consumer_of))
    try:
        # the next round of `follow` begins only after the look in flight ended
        await eventually(
            lambda: revoked_in_look is not None and looks > revoked_in_look, bool, within=5, what="the look to end"
        )
        assert [sample for family in metrics.consumer_lag.collect() for sample in family.samples] == []
        progress.assigned([])  # the partitions went to another aggregator
        await eventually(progress.not_ready, lambda s: s is None, within=5, what="ready with no partitions")
        assert [sample for family in metrics.consumer_lag.collect() for sample in family.samples] == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
