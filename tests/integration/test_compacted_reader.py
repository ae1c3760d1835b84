"""Reading a compacted topic on the real broker: a record its reader raises on is passed over,
logged, and never stops the reader (every follower of a topic reads through this reader); so are
records its consumer cannot parse. A partition added while it follows is read too."""

import asyncio
import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from spendpipe.platform.compacted import CompactedTopicReader, OnRecord, TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from tests.support.pipeline import produce_records
from tests.support.raw_records import produce_batch
from tests.support.waiting import eventually


async def caught_up(bootstrap: str, topic: str, apply: OnRecord, caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """A reader of `topic` caught up once, its errors logged to `caplog`: records read, skipped."""
    async with CompactedTopicReader(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), topic=topic, on_record=apply
    ) as reader:
        with caplog.at_level(logging.ERROR, logger="spendpipe.platform.compacted"):
            return await reader.catch_up(), reader.skipped


async def test_a_record_its_reader_raises_on_is_passed_over_and_logged(
    kafka_broker: str, make_topics, caplog: pytest.LogCaptureFixture
) -> None:
    topics = await make_topics(kafka_broker, 1)
    await produce_records(kafka_broker, topics.decisions, [(b"a", b"1"), (b"b", b"crafted"), (b"c", b"3")])
    applied: list[bytes] = []

    def apply(record: TopicRecord) -> None:
        applied.append(int(record.value or b"").to_bytes())  # int() raises on the crafted value

    read, skipped = await caught_up(kafka_broker, topics.decisions, apply, caplog)

    assert read == 3
    assert applied == [b"\x01", b"\x03"]
    assert skipped == 1
    assert f"skipped a record of {topics.decisions} it could not apply (partition 0, offset 1)" in caplog.text


async def test_records_the_consumer_cannot_parse_are_passed_over_and_logged(
    kafka_broker: str, make_topics, caplog: pytest.LogCaptureFixture
) -> None:
    topics = await make_topics(kafka_broker, 1)
    await produce_records(kafka_broker, topics.decisions, [(b"a", b"1")])
    first = await produce_batch(kafka_broker, topics.decisions, 0, [b"2", b"3"], unreadable={0}, key=b"b")
    await produce_records(kafka_broker, topics.decisions, [(b"c", b"4")])
    applied: list[bytes] = []

    def apply(record: TopicRecord) -> None:
        applied.append(record.value or b"")

    read, skipped = await caught_up(kafka_broker, topics.decisions, apply, caplog)

    assert read == 2
    assert applied == [b"1", b"4"]
    assert skipped == 1
    assert (
        f"skipped records of {topics.decisions} it could not read: {topics.decisions}[0] offsets {first}-{first + 1}"
        in caplog.text
    )


async def test_a_partition_added_while_following_is_read_from_its_beginning(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker, 1)
    kafka = KafkaSettings(bootstrap_servers=kafka_broker)
    await produce_records(kafka_broker, topics.decisions, [(b"a", b"1")])
    applied: list[tuple[int, bytes]] = []

    def apply(record: TopicRecord) -> None:
        applied.append((record.partition, record.value or b""))

    async with CompactedTopicReader(
        kafka=kafka, topic=topics.decisions, on_record=apply, partitions_refresh_ms=500
    ) as reader:
        await reader.catch_up()
        following = asyncio.create_task(reader.follow())
        try:
            # when a partition is added and written to, and the first one too
            admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
            await admin.start()
            try:
                await admin.create_partitions({topics.decisions: NewPartitions(total_count=2)})
            finally:
                await admin.close()
            await produce_batch(kafka_broker, topics.decisions, 1, [b"2"], unreadable=set(), key=b"b")
            await produce_batch(kafka_broker, topics.decisions, 0, [b"3"], unreadable=set(), key=b"c")

            # then the reader applies both, the first partition's record once
            await eventually(lambda: sorted(applied), lambda found: len(found) >= 3, within=30, what="3 records")
        finally:
            following.cancel()
    assert sorted(applied) == [(0, b"1"), (0, b"3"), (1, b"2")]
