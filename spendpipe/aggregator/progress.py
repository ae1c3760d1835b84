"""How far the aggregator is behind `spend.events`: the consumer-lag gauge and readiness.

Every `interval_s` it reads, through the subscriber's own consumer and for the partitions
assigned to this aggregator, the end offsets and the group's committed offsets. Committed is
what ClickHouse holds (offsets are committed after a flush, and past a transaction's marker
once the intake is idle), so lag = end - committed is the number of records not yet counted.

Ready means caught up: after the group assigned partitions, the committed offsets reached the
end offsets of the first look after that assignment — the backlog that was waiting when the
aggregator joined is counted. It then stays ready: lag that builds under load shows in the
gauge rather than taking the process out of service. An aggregator that joined the group and
got no partition (more replicas than partitions) has nothing to catch up and is ready.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Gauge

log = logging.getLogger(__name__)


class ConsumerProgress:
    def __init__(self, *, topic: str, lag: Gauge, interval_s: float = 1.0) -> None:
        self._topic = topic
        self._lag = lag
        self._interval_s = interval_s
        self._assigned: frozenset[TopicPartition] | None = None
        """None until the group assigns partitions to this consumer, and from a revocation to
        the next assignment (nothing to look at: the group is rebalancing)."""
        self._targets: dict[TopicPartition, int] | None = None
        """End offsets of the first look after the latest assignment."""
        self._behind: int | None = None
        self._caught_up = False

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """The rebalance listener's `on_partitions_assigned` (aiokafka hands the full assignment)."""
        self._assigned = frozenset(partitions)
        self._targets = None

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """The listener's `on_partitions_revoked` (aiokafka revokes the whole assignment). A look
        in flight sees the assignment change and sets no series again."""
        self._assigned = None
        for partition in partitions:
            self._lag.remove(str(partition.partition))

    def not_ready(self) -> str | None:
        """None once caught up, else what it waits for (read from the ops server's thread)."""
        if self._caught_up:
            return None
        if self._assigned is None:
            return f"waiting for partitions of {self._topic} to be assigned"
        if self._behind is None:
            return f"reading the end offsets of {self._topic}"
        return f"{self._behind} records of {self._topic} behind the end offsets seen at start"

    async def follow(self, consumer_of: Callable[[], AIOKafkaConsumer | None]) -> None:
        """Look every `interval_s` until cancelled; a failed look (a rebalance in progress, the
        broker away) is logged and retried."""
        while True:
            consumer = consumer_of()
            if consumer is not None and self._assigned is not None:
                try:
                    await self._look(consumer, self._assigned)
                except Exception as error:
                    log.debug("could not read the offsets of %s: %r", self._topic, error)
            await asyncio.sleep(self._interval_s)

    async def _look(self, consumer: AIOKafkaConsumer, assigned: frozenset[TopicPartition]) -> None:
        partitions = sorted(assigned)
        if not partitions:
            self._behind, self._caught_up = 0, True
            return
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        done = {}
        for partition in partitions:
            committed = await consumer.committed(partition)
            # never committed: the group starts from the earliest record (auto_offset_reset)
            done[partition] = starts[partition] if committed is None else committed
        if assigned is not self._assigned:
            return  # revoked or reassigned meanwhile: these numbers belong to the old assignment
            # (and a gauge set now would bring back the series `revoked` removed)
        for partition in partitions:
            self._lag.labels(str(partition.partition)).set(max(ends[partition] - done[partition], 0))
        if self._targets is None:
            self._targets = ends
        self._behind = sum(max(self._targets.get(p, 0) - done[p], 0) for p in partitions)
        if self._behind == 0 and not self._caught_up:
            self._caught_up = True
            log.info("aggregator caught up with %s", self._topic)
