"""Records aiokafka cannot parse (a header name that is not UTF-8), on the real broker: a reader
passes over their batch, says so, and loses no other record, of their partition or another."""

import asyncio
import contextlib
import functools
import operator
import uuid

import aiokafka.codec
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from spendpipe.aggregator.dead_letters import DEAD_LETTER_REASON, SOURCE_OFFSET, SOURCE_PARTITION
from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.unreadable import TolerantConsumer, Unreadable
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.pipeline import (
    committed_offset,
    counted_events,
    events_counted,
    read_topic,
    running_aggregator,
    totals,
)
from tests.support.raw_records import Crafted, produce_batch
from tests.support.waiting import eventually

CODECS = ("gzip", "snappy", "lz4", "zstd")
CODEC_EVENTS = 25
READ_AS: dict[Crafted, str] = {
    "header": "UnicodeDecodeError",
    "attributes": "CorruptRecordException",
    "offset": "MisplacedRecordError",
}
"""How a record is crafted, and the error its dead letter names."""


def reader_from_start(bootstrap: str, topic: str, passed_over: list[Unreadable]) -> TolerantConsumer:
    """A consumer of `topic` from its beginning, telling `passed_over` of each range passed over."""
    return TolerantConsumer(
        topic,
        **KafkaSettings(bootstrap_servers=bootstrap).aiokafka_kwargs(),
        group_id=f"readers-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        unreadable=passed_over.append,
    )


@pytest.mark.parametrize(("bad", "taking"), [(0, "getmany"), (1, "getmany"), (2, "getmany"), (1, "getone")])
async def test_a_reader_passes_over_an_unreadable_batch_and_keeps_every_other_record(
    kafka_broker: str, make_topics, bad: int, taking: str
) -> None:
    # given good records on three partitions, and on one partition a batch whose third record has
    # a header name that is not UTF-8, between good batches
    topics = await make_topics(kafka_broker, 3)
    topic = topics.events
    good: dict[int, list[bytes]] = {p: [] for p in range(3)}

    async def send_good(partition: int, count: int) -> None:
        values = [f"{partition}-{len(good[partition]) + n}".encode() for n in range(count)]
        await produce_batch(kafka_broker, topic, partition, values, unreadable=set())
        good[partition] += values

    for partition in range(3):
        await send_good(partition, 5)
    first = await produce_batch(kafka_broker, topic, bad, [b"bad-0", b"bad-1", b"bad-2", b"bad-3"], unreadable={2})
    for partition in range(3):
        await send_good(partition, 5)

    # when a consumer reads the topic from the start, in batches or (as FastStream's subscribers
    # of one message at a time do) a record at a time
    passed_over: list[Unreadable] = []
    read: dict[int, list[bytes]] = {p: [] for p in range(3)}
    consumer = reader_from_start(kafka_broker, topic, passed_over)
    await consumer.start()
    try:

        async def read_on() -> int:
            if taking == "getmany":
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    read[tp.partition] += [record.value for record in records]
            else:
                with contextlib.suppress(TimeoutError):
                    record = await asyncio.wait_for(consumer.getone(), 5)
                    read[record.partition].append(record.value)
            return sum(map(len, read.values()))

        expected = sum(map(len, good.values())) + 2
        await eventually(read_on, lambda count: count >= expected, within=60, what=f"{expected} records read")
        positions = {p: await consumer.position(TopicPartition(topic, p)) for p in range(3)}
    finally:
        await consumer.stop()

    # then every good record is read once, in order, and so are those before the bad one in its batch
    for partition in range(3):
        if partition != bad:
            assert read[partition] == good[partition]
    assert read[bad] == [*good[bad][:5], b"bad-0", b"bad-1", *good[bad][5:]]
    # and the rest of that batch is passed over, once, with its offsets and the reason
    assert passed_over == [Unreadable(topic, bad, first + 2, first + 3, passed_over[0].reason)]
    assert "UnicodeDecodeError" in passed_over[0].reason
    assert positions == {p: 14 if p == bad else 10 for p in range(3)}


async def test_a_record_past_its_batch_is_passed_over_when_a_call_ends_on_it(kafka_broker: str, make_topics) -> None:
    # given good records, a batch of one whose record's offset delta says 63 (inside the log,
    # which holds 106 records, but past its batch), and more good records
    topic = (await make_topics(kafka_broker, 1)).events
    good = [f"good-{n}".encode() for n in range(105)]
    await produce_batch(kafka_broker, topic, 0, good[:5], unreadable=set())
    crafted = await produce_batch(kafka_broker, topic, 0, [b"crafted"], unreadable={0}, crafted="offset")
    await produce_batch(kafka_broker, topic, 0, good[5:], unreadable=set())

    # when a consumer reads them one record a call, so that a call ends on the crafted record
    # (aiokafka's position is then just after the offset it claims)
    passed_over: list[Unreadable] = []
    read: list[bytes] = []
    consumer = reader_from_start(kafka_broker, topic, passed_over)
    await consumer.start()
    try:

        async def read_on() -> int:
            for records in (await consumer.getmany(timeout_ms=500, max_records=1)).values():
                read.extend(record.value for record in records)
            return len(read)

        await eventually(read_on, lambda count: count >= len(good), within=60, what=f"{len(good)} records read")
    finally:
        await consumer.stop()

    # then every good record is read once, in order, and the crafted one is passed over
    assert read == good
    assert passed_over == [Unreadable(topic, 0, crafted, crafted, passed_over[0].reason)]
    assert "MisplacedRecordError" in passed_over[0].reason


async def test_unreadable_batches_in_a_row_are_passed_over_in_one_call(kafka_broker: str, make_topics) -> None:
    # given a good record, thirty batches of one unreadable record each (a writer flooding the
    # partition with them), and good records after them
    topic = (await make_topics(kafka_broker, 1)).events
    await produce_batch(kafka_broker, topic, 0, [b"good-0"], unreadable=set())
    flood = [await produce_batch(kafka_broker, topic, 0, [b"bad"], unreadable={0}) for _ in range(30)]
    await produce_batch(kafka_broker, topic, 0, [b"good-1", b"good-2"], unreadable=set())

    # when a consumer reads them
    consumer = reader_from_start(kafka_broker, topic, [])
    calls_passing_over: list[list[Unreadable]] = []
    read: list[bytes] = []
    await consumer.start()
    try:

        async def read_on() -> int:
            records, passed_over = await consumer.read(timeout_ms=500)
            read.extend(record.value for taken in records.values() for record in taken)
            if passed_over:
                calls_passing_over.append(passed_over)
            return len(read)

        await eventually(read_on, lambda count: count >= 3, within=60, what="the three good records read")
    finally:
        await consumer.stop()

    # then the good records are read, and one call passes over the thirty, each its own range
    assert read == [b"good-0", b"good-1", b"good-2"]
    assert [[(u.first, u.last) for u in passed] for passed in calls_passing_over] == [[(at, at) for at in flood]]


@pytest.mark.parametrize("crafted", READ_AS)
async def test_the_aggregator_dead_letters_an_unreadable_batch_and_counts_every_other_event(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    crafted: Crafted,
) -> None:
    # given events on two partitions, and on partition 1 a batch of four whose third record is
    # crafted: a header name that is not UTF-8, an attributes byte aiokafka misreads, or an
    # offset past its batch (aiokafka hands it over there: read by offset, the events after it
    # would look read already)
    topics = await make_topics(kafka_broker, 2)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    counted: list[SpendEvent] = []

    async def send(partition: int, count: int, unreadable: frozenset[int] = frozenset()) -> int:
        events = [make_event() for _ in range(count)]
        counted.extend(event for n, event in enumerate(events) if not unreadable or n < min(unreadable))
        values = [event.to_json() for event in events]
        return await produce_batch(
            kafka_broker, topics.events, partition, values, unreadable=set(unreadable), crafted=crafted
        )

    async with running_aggregator(settings, clickhouse) as (aggregator, metrics):
        # when they are sent, the batch between good ones
        for partition in (0, 1):
            await send(partition, 10)
        first = await send(1, 4, unreadable=frozenset({2}))
        for partition in (0, 1):
            await send(partition, 10)
        for partition, end in ((0, 20), (1, 24)):
            await eventually(
                functools.partial(committed_offset, kafka_broker, topics.events, settings.group_id, partition),
                functools.partial(operator.eq, end),
                within=60,
                what=f"the commit of partition {partition} at its end ({end})",
            )
        letters = await read_topic(kafka_broker, topics.events_dead_letter, expected=1)
        dead_lettered = metrics.dead_letters._value.get()
        # ready: it looks at its progress every second, so it may say so a moment after the commits
        await eventually(aggregator.not_ready, lambda why: why is None, within=10, what="the aggregator ready")

    # then every event but the two passed over is counted, exactly
    assert counted_events(clickhouse) == len(counted) == 42
    assert totals(clickhouse)[("global", "", "")] == sum(event.cost for event in counted)
    # and the two are dead-lettered once, saying which offsets and why
    assert dead_lettered == len(letters) == 1
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers[SOURCE_PARTITION] == "1"
    assert headers[SOURCE_OFFSET] == str(first + 3)
    assert headers[DEAD_LETTER_REASON].startswith(f"unreadable: offsets {first + 2}-{first + 3} cannot be read (")
    assert READ_AS[crafted] in headers[DEAD_LETTER_REASON]


async def test_the_aggregator_counts_batches_compressed_by_any_kafka_codec(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given events written in batches compressed by each codec Kafka has (a gateway, or any client
    # that can write the topic, may use any)
    topics = await make_topics(kafka_broker, 1)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    events = [make_event() for _ in range(CODEC_EVENTS * len(CODECS))]

    async with running_aggregator(settings, clickhouse):
        # when they are sent
        for n, codec in enumerate(CODECS):
            producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, compression_type=codec, linger_ms=50)
            await producer.start()
            try:
                sent = [await producer.send(topics.events, event.to_json()) for event in events[n :: len(CODECS)]]
                await asyncio.gather(*sent)
            finally:
                await producer.stop()

        # then every one is counted
        await events_counted(clickhouse, len(events))
    assert totals(clickhouse)[("global", "", "")] == sum(event.cost for event in events)


async def test_a_batch_in_a_codec_no_library_here_reads_is_passed_over(
    kafka_broker: str, make_topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a good record, an lz4 batch, and another good record
    topics = await make_topics(kafka_broker, 1)
    await produce_batch(kafka_broker, topics.events, 0, [b"before"], unreadable=set())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, compression_type="lz4", linger_ms=50)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topics.events, b"lz4", partition=0) for _ in range(3)])
    finally:
        await producer.stop()
    await produce_batch(kafka_broker, topics.events, 0, [b"after"], unreadable=set())

    # when a consumer without lz4 reads the topic
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    passed_over: list[Unreadable] = []
    consumer = TolerantConsumer(bootstrap_servers=kafka_broker, enable_auto_commit=False, unreadable=passed_over.append)
    await consumer.start()
    tp = TopicPartition(topics.events, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    read: list[bytes] = []
    try:

        async def read_on() -> list[bytes]:
            read.extend(r.value for r in (await consumer.getmany(timeout_ms=500)).get(tp, []))
            return read

        await eventually(read_on, lambda values: b"after" in values, within=30, what="the record after the batch")
    finally:
        await consumer.stop()

    # then the batch is passed over, saying why, and the records around it read
    assert read == [b"before", b"after"]
    assert [(u.first, u.last) for u in passed_over] == [(1, 3)]
    assert "UnsupportedCodecError" in passed_over[0].reason
