"""Bad input never stops the pipeline: it is dead-lettered with its reason, and counted."""

import re
from typing import Any

import orjson

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.dead_letters import (
    DEAD_LETTER_REASON,
    EXCERPT_BYTES,
    SOURCE_OFFSET,
    SOURCE_TOPIC,
    SOURCE_VALUE_SIZE,
    TRUNCATED,
)
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.pipeline import (
    committed_offset,
    counted_events,
    produce,
    read_topic,
    running_aggregator,
    totals,
)
from tests.support.waiting import eventually


async def test_malformed_and_future_version_messages_are_dead_lettered(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given valid events around a malformed message and one of a future schema version
    topics = await make_topics(kafka_broker, 1)
    before, after = [make_event() for _ in range(5)], [make_event() for _ in range(5)]
    malformed = b'{"event_id": "x", "cost": "not money'
    future = orjson.loads(make_event().to_json())
    future["schema_version"] = 2
    negative = orjson.loads(make_event().to_json())
    negative["cost"] = "-1.5"
    bad = [malformed, orjson.dumps(future), orjson.dumps(negative)]
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)

    async with running_aggregator(settings, clickhouse) as (_, metrics):
        # when
        await produce(kafka_broker, topics.events, [e.to_json() for e in before] + bad + [e.to_json() for e in after])
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= 10, within=60, what="10 valid events")
        letters = await read_topic(kafka_broker, topics.events_dead_letter, expected=3)
        dead_lettered = metrics.dead_letters._value.get()

    # then the valid events are all counted, exactly
    assert counted_events(clickhouse) == 10
    assert totals(clickhouse)[("global", "", "")] == sum(e.cost for e in before + after)
    # and each bad message is on the dead-letter topic, bytes unchanged, with why and where from
    assert [letter.value for letter in letters] == bad
    reasons = [dict(letter.headers)[DEAD_LETTER_REASON].decode() for letter in letters]
    assert reasons[0].startswith("invalid spend event")
    assert reasons[1] == "unsupported schema_version 2: this consumer reads 1"
    assert reasons[2].startswith("invalid spend event: cost: ")
    assert "greater than or equal to 0" in reasons[2]
    assert {dict(letter.headers)[SOURCE_TOPIC].decode() for letter in letters} == {topics.events}
    assert [int(dict(letter.headers)[SOURCE_OFFSET]) for letter in letters] == [5, 6, 7]
    assert dead_lettered == 3


def refuse_the_second_letter_once(aggregator: Aggregator) -> None:
    """The dead-letter publisher fails once, on the second letter: the flush fails after one
    letter went out, and is retried."""
    publisher = aggregator._dead_letters
    publish, calls = publisher.publish, []

    async def refusing(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise ConnectionError("the dead-letter topic refused a letter")
        return await publish(*args, **kwargs)

    publisher.publish = refusing  # type: ignore[method-assign]


async def test_poison_pills_are_dead_lettered_whole_or_cut_and_the_consumer_moves_on(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given a token count past UInt64 and an invalid record just under the broker's 1 MiB limit,
    # each under its own key, between valid events
    topics = await make_topics(kafka_broker, 1)
    before, after = [make_event() for _ in range(3)], [make_event() for _ in range(3)]
    wide = re.sub(rb'"prompt_tokens":\d+', b'"prompt_tokens":18446744073709551616', make_event().to_json())
    huge = b'{"event_id": "' + b"h" * (1_048_576 - 300) + b'"}'  # with its key, just fits a request
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)

    async with running_aggregator(settings, clickhouse):
        # when
        await produce(kafka_broker, topics.events, [e.to_json() for e in before])
        await produce(kafka_broker, topics.events, [wide], key=b"wide-key")
        await produce(kafka_broker, topics.events, [huge], key=b"huge-key")
        await produce(kafka_broker, topics.events, [e.to_json() for e in after])
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= 6, within=60, what="6 valid events")
        letters = await read_topic(kafka_broker, topics.events_dead_letter, expected=2)
        await eventually(
            lambda: committed_offset(kafka_broker, topics.events, settings.group_id),
            lambda offset: offset == 8,
            within=30,
            what="the consumer's commit past every record",
        )

    # then the valid events are counted, and each pill is dead-lettered once, with its key
    assert counted_events(clickhouse) == 6
    assert totals(clickhouse)[("global", "", "")] == sum(e.cost for e in before + after)
    assert [(letter.key, int(dict(letter.headers)[SOURCE_OFFSET])) for letter in letters] == [
        (b"wide-key", 3),
        (b"huge-key", 4),
    ]
    wide_letter, huge_letter = (dict(letter.headers) for letter in letters)
    assert letters[0].value == wide
    assert wide_letter[DEAD_LETTER_REASON].decode().startswith("invalid spend event: prompt_tokens")
    assert wide_letter[TRUNCATED] == b""
    assert letters[1].value == huge[:EXCERPT_BYTES]
    assert huge_letter[TRUNCATED] == b"value"
    assert int(huge_letter[SOURCE_VALUE_SIZE]) == len(huge)


async def test_a_retried_flush_does_not_publish_its_letters_again(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given three bad records in one batch, and a dead-letter topic that refuses the second letter once
    topics = await make_topics(kafka_broker, 1)
    bad = [b"not json 1", b"not json 2", b"not json 3"]
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings, retry_backoff_s=0.1)

    async with running_aggregator(settings, clickhouse) as (aggregator, metrics):
        refuse_the_second_letter_once(aggregator)
        # when
        await produce(kafka_broker, topics.events, [*bad, make_event().to_json()])
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= 1, within=60, what="the valid event")
        await eventually(
            lambda: committed_offset(kafka_broker, topics.events, settings.group_id),
            lambda offset: offset == 4,
            within=30,
            what="the commit after the retried flush",
        )
        letters = await read_topic(kafka_broker, topics.events_dead_letter, expected=3)
        failures = metrics.flush_failures._value.get()
        consumed, rereads = metrics.consumed._value.get(), metrics.rereads._value.get()

    # then the flush failed once, and each record was dead-lettered exactly once
    assert failures == 1
    assert [letter.value for letter in letters] == bad
    # and the metrics count four records consumed, and the failed batch's records read again apart
    assert consumed == 4
    assert rereads >= 2
