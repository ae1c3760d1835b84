"""Bad input never stops the pipeline: it is dead-lettered with its reason, and counted."""

import orjson

from spendpipe.aggregator.app import DEAD_LETTER_REASON, SOURCE_OFFSET, SOURCE_TOPIC
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.pipeline import counted_events, produce, read_topic, running_aggregator, totals
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
