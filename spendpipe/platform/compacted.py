"""Reading a compacted topic as a table: from the beginning, to its end, then following it.

Budgets and decisions are compacted topics keyed by scope; a reader that starts cold rebuilds
the current state by reading every partition from the beginning. `catch_up()` returns once the
reader has seen everything that was in the topic when it started (the end offsets read then);
`follow()` keeps applying what arrives after. A tombstone (null value) is handed over as None.
"""

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import partition_numbers

OnRecord = Callable[[bytes | None, bytes | None], None]
"""(key, value) -> None; value None is a tombstone."""


class CompactedTopicReader:
    def __init__(self, *, kafka: KafkaSettings, topic: str, on_record: OnRecord) -> None:
        self._kafka = kafka
        self._topic = topic
        self._on_record = on_record
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        """Connect and position every partition at its beginning (no consumer group)."""
        self._partitions = [TopicPartition(self._topic, p) for p in await partition_numbers(self._kafka, self._topic)]
        self._consumer = AIOKafkaConsumer(**self._kafka.aiokafka_kwargs(), enable_auto_commit=False)
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)

    async def catch_up(self) -> int:
        """Apply every record up to the end offsets as of now. Returns how many were applied."""
        consumer = self._require()
        ends = await consumer.end_offsets(self._partitions)
        applied = 0
        while True:
            positions = {p: await consumer.position(p) for p in self._partitions}
            if all(positions[p] >= ends[p] for p in self._partitions):
                return applied
            applied += await self._poll(timeout_ms=200)

    async def follow(self) -> None:
        """Apply records as they arrive, until cancelled."""
        while True:
            await self._poll(timeout_ms=500)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _poll(self, timeout_ms: int) -> int:
        batches = await self._require().getmany(timeout_ms=timeout_ms)
        applied = 0
        for records in batches.values():
            for record in records:
                self._on_record(record.key, record.value)
                applied += 1
        await asyncio.sleep(0)
        return applied

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("start() the reader first")
        return self._consumer
