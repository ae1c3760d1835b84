"""Reading a compacted topic on the real broker: a record its reader raises on is passed over,
logged, and never stops the reader (every follower of a topic reads through this reader)."""

import logging

import pytest

from spendpipe.platform.compacted import CompactedTopicReader, TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from tests.support.pipeline import produce_records


async def test_a_record_its_reader_raises_on_is_passed_over_and_logged(
    kafka_broker: str, make_topics, caplog: pytest.LogCaptureFixture
) -> None:
    topics = await make_topics(kafka_broker, 1)
    await produce_records(kafka_broker, topics.decisions, [(b"a", b"1"), (b"b", b"crafted"), (b"c", b"3")])
    applied: list[bytes] = []

    def apply(record: TopicRecord) -> None:
        applied.append(int(record.value or b"").to_bytes())  # int() raises on the crafted value

    async with CompactedTopicReader(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker), topic=topics.decisions, on_record=apply
    ) as reader:
        with caplog.at_level(logging.ERROR, logger="spendpipe.platform.compacted"):
            read = await reader.catch_up()

    assert read == 3
    assert applied == [b"\x01", b"\x03"]
    assert reader.skipped == 1
    assert f"skipped a record of {topics.decisions} it could not apply (partition 0, offset 1)" in caplog.text
