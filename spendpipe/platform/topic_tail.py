"""Reading the end of a topic without a consumer group, as `tail` reads a file: the last
records now (`last`), then what arrives after (`follow`), or one record at its coordinates
(`record_at`). Nothing is committed; readers of alerts and dead letters leave no trace.

    async with TopicTail(kafka=kafka, topic=topic) as tail:
        for record in await tail.last(20):
            ...
"""

import heapq
from collections.abc import AsyncIterator
from types import TracebackType

from aiokafka import TopicPartition

from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import partition_numbers
from spendpipe.platform.unreadable import TolerantConsumer

POLL_MS = 200


class TopicTail:
    def __init__(self, *, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._consumer: TolerantConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> "TopicTail":
        """Connect and assign every partition. Raises `RuntimeError` if the topic does not exist."""
        self._partitions = [TopicPartition(self._topic, p) for p in await partition_numbers(self._kafka, self._topic)]
        consumer = TolerantConsumer(**self._kafka.aiokafka_kwargs(), enable_auto_commit=False, fetch_max_wait_ms=200)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(self._partitions)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def last(self, limit: int) -> list[TopicRecord]:
        """The last `limit` records over all partitions, oldest first (by timestamp, then
        partition and offset); the consumer stays at the end, ready to `follow()`."""
        consumer = self._require()
        starts = await consumer.beginning_offsets(self._partitions)
        ends = await consumer.end_offsets(self._partitions)
        for partition in self._partitions:
            consumer.seek(partition, max(starts[partition], ends[partition] - limit))
        read: list[TopicRecord] = []
        while any([await consumer.position(p) < ends[p] for p in self._partitions]):
            for records in (await consumer.getmany(timeout_ms=POLL_MS)).values():
                read.extend(r for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        for partition in self._partitions:
            consumer.seek(partition, ends[partition])
        return heapq.nlargest(limit, read, key=_order)[::-1]

    async def follow(self) -> AsyncIterator[TopicRecord]:
        """Records as they arrive, from where the consumer stands, until the caller stops."""
        consumer = self._require()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for record in sorted((r for records in batches.values() for r in records), key=_order):
                yield record

    async def record_at(self, partition: int, offset: int) -> TopicRecord | None:
        """The record at `partition`/`offset`, or None if the topic holds none there (never
        written, or removed by retention or compaction)."""
        consumer = self._require()
        where = TopicPartition(self._topic, partition)
        if where not in self._partitions:
            return None
        start, end = (await consumer.beginning_offsets([where]))[where], (await consumer.end_offsets([where]))[where]
        if not start <= offset < end:
            return None
        consumer.seek(where, offset)
        while await consumer.position(where) < end:
            for record in (await consumer.getmany(where, timeout_ms=POLL_MS)).get(where, []):
                if record.offset >= offset:
                    return record if record.offset == offset else None
        return None

    def _require(self) -> TolerantConsumer:
        if self._consumer is None:
            raise RuntimeError("enter the TopicTail first")
        return self._consumer


def _order(record: TopicRecord) -> tuple[int, int, int]:
    return (record.timestamp, record.partition, record.offset)
