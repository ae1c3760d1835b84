"""Reading a compacted topic as a table: from the beginning, to its end, then following it.

Budgets and decisions are compacted topics keyed by scope; a reader that starts cold rebuilds
the current state by reading every partition from the beginning. `catch_up()` returns once the
reader has seen everything that was in the topic when it started (the end offsets read then);
`follow()` keeps applying what arrives after. A tombstone is a record whose value is None. The
gateway's sessions log, kept for a week rather than compacted, is read the same way. A record
`on_record` raises on is passed over and logged (`skipped`), and so are records the consumer
cannot parse (`platform.unreadable`): one crafted record must not stop every reader of a topic.
A partition added to the topic while the reader follows it is read from its beginning, within
`PARTITIONS_REFRESH_MS` (the client's metadata refresh): a decision keyed to it would otherwise
reach no gateway until it restarts.

    async with CompactedTopicReader(kafka=kafka, topic=topic, on_record=apply) as reader:
        await reader.catch_up()

or, to read to the end once, `await read_to_end(kafka=kafka, topic=topic, on_record=apply)`.
"""

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TypeAlias

from aiokafka import ConsumerRecord, TopicPartition

from spendpipe.platform.first_logged import FirstLogged
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import partition_numbers
from spendpipe.platform.unreadable import TolerantConsumer, Unreadable

TopicRecord: TypeAlias = ConsumerRecord[bytes, bytes]
"""A record as read: `.key`, `.value` (None: a tombstone), `.timestamp` (ms) and the rest."""

OnRecord: TypeAlias = Callable[[TopicRecord], None]
"""Called with each record, in offset order within a partition."""

PARTITIONS_REFRESH_MS = 30_000
"""How often the reader's client asks the brokers for the topic's partitions (Kafka's
`metadata.max.age.ms`, 5 minutes by default)."""

MOST_SKIPS_LOGGED = 100
"""Records a reader logs passing over; a writer that sends more cannot fill the log."""

log = logging.getLogger(__name__)


class CompactedTopicReader:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        on_record: OnRecord,
        fetch_max_wait_ms: int = 500,
        partitions_refresh_ms: int = PARTITIONS_REFRESH_MS,
    ) -> None:
        """`fetch_max_wait_ms`: Kafka's `fetch.max.wait.ms`, lower where a record read back is waited on."""
        self._kafka = kafka
        self._topic = topic
        self._on_record = on_record
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._partitions_refresh_ms = partitions_refresh_ms
        self._consumer: TolerantConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._skips = FirstLogged(log, MOST_SKIPS_LOGGED)

    async def start(self) -> None:
        """Connect and position every partition at its beginning (no consumer group). If this
        raises, nothing is left open."""
        self._partitions = [TopicPartition(self._topic, p) for p in await partition_numbers(self._kafka, self._topic)]
        self._consumer = TolerantConsumer(
            **self._kafka.aiokafka_kwargs(),
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            metadata_max_age_ms=self._partitions_refresh_ms,
            unreadable=self._passed_over,
        )
        try:
            await self._consumer.start()
            self._consumer.assign(self._partitions)
            await self._consumer.seek_to_beginning(*self._partitions)
        except BaseException:
            await self.stop()
            raise

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
            await self._take_added_partitions()
            await self._poll(timeout_ms=500)

    async def _take_added_partitions(self) -> None:
        """Partitions the client's metadata names that the reader does not read yet: from their
        beginning, and the others on from where they are (assigning anew forgets positions)."""
        consumer = self._require()
        named = consumer.partitions_for_topic(self._topic) or set()
        added = [tp for p in sorted(named) if (tp := TopicPartition(self._topic, p)) not in self._partitions]
        if not added:
            return
        positions = {tp: await consumer.position(tp) for tp in self._partitions}
        self._partitions = [*self._partitions, *added]
        consumer.assign(self._partitions)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        await consumer.seek_to_beginning(*added)
        log.info("spendpipe reads %s's added partitions %s", self._topic, [tp.partition for tp in added])

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def __aenter__(self) -> "CompactedTopicReader":
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    async def _poll(self, timeout_ms: int) -> int:
        batches = await self._require().getmany(timeout_ms=timeout_ms)
        applied = 0
        for records in batches.values():
            for record in records:
                self._apply(record)
                applied += 1
        await asyncio.sleep(0)
        return applied

    def _apply(self, record: TopicRecord) -> None:
        """`on_record`, and a record it raises on is passed over: a writer's crafted record the
        reader's checks missed must not stop every reader of the topic (reading it again, after
        a reconnection, would raise again)."""
        try:
            self._on_record(record)
        except Exception as error:
            self._skips.error(
                "spendpipe skipped a record of %s it could not apply (partition %d, offset %d): %s",
                self._topic,
                record.partition,
                record.offset,
                ascii(repr(error))[:300],
            )

    def _passed_over(self, unreadable: Unreadable) -> None:
        self._skips.error("spendpipe skipped records of %s it could not read: %s", self._topic, unreadable)

    @property
    def skipped(self) -> int:
        """Records `on_record` raised on, passed over (`_apply`), and ranges of records the
        consumer could not parse."""
        return self._skips.count

    def _require(self) -> TolerantConsumer:
        if self._consumer is None:
            raise RuntimeError("start() the reader first")
        return self._consumer


async def read_to_end(*, kafka: KafkaSettings, topic: str, on_record: OnRecord) -> int:
    """Read `topic` from the beginning to the end it has now, once. Returns how many records."""
    async with CompactedTopicReader(kafka=kafka, topic=topic, on_record=on_record) as reader:
        return await reader.catch_up()
