"""A corpus of hostile records mixed into good traffic through real Kafka: every good event is
counted once, every bad record is dead-lettered once with a reason and its key, and the
consumer's commit reaches the end of the topic."""

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from aiokafka import AIOKafkaProducer

from spendpipe.aggregator.dead_letters import DEAD_LETTER_REASON, SOURCE_OFFSET, TRUNCATED
from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import ParseRoute, aggregator_settings
from tests.support.events import make_event
from tests.support.pipeline import (
    committed_offset,
    counted_events,
    events_counted,
    produce_records,
    read_topic,
    running_aggregator,
    totals,
)
from tests.support.waiting import eventually


def changed(**fields: object) -> bytes:
    """A valid event's JSON with some fields replaced."""
    return orjson.dumps(orjson.loads(make_event().to_json()) | fields)


def hostile_corpus(counted: SpendEvent) -> dict[str, bytes | None]:
    """Name -> value of records that must not be counted; `counted` is an event counted before."""
    text = make_event().to_json()
    return {
        "tokens past UInt64": re.sub(rb'"prompt_tokens":\d+', b'"prompt_tokens":18446744073709551616', text),
        "tokens past the bound": changed(total_tokens=10**9 + 1),
        "cost past the bound": changed(cost="1000000.01"),
        "negative cost": changed(cost="-1"),
        "cost with an underscore": changed(cost="0_5"),
        "cost as a JSON number": changed(cost=0.5),
        "cost with an exponent": changed(cost="1e-4"),
        "infinite latency": text.replace(b'"latency_ms":0.0', b'"latency_ms":Infinity'),
        "schema_version true": changed(schema_version=True),
        "tokens as a string": changed(prompt_tokens="10"),
        "tags not a list": changed(request_tags="x"),
        "end_user too long": changed(end_user="u" * 300),
        "about 1 MiB": b'{"event_id": "' + b"h" * (1_048_576 - 400) + b'"}',
        "dated an hour ahead": changed(occurred_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
        "dated before 2000": changed(occurred_at="1999-12-31T23:59:59Z"),
        "conflicting duplicate": orjson.dumps(orjson.loads(counted.to_json()) | {"cost": str(counted.cost + 1)}),
        "invalid UTF-8": text.replace(b"test-gateway", b"caf\xe9"),
        "lone surrogate": text.replace(b"test-gateway", b"x\\udc80"),
        "UTF-16": text.decode().encode("utf-16"),
        "byte order mark": b"\xef\xbb\xbf" + text,
        "not JSON": b"\x00\x01binary",
        "nested 5,000 levels deep": text[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "no value": None,
    }


async def test_hostile_records_are_dead_lettered_once_and_good_ones_counted_once(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    parse_route: ParseRoute,
) -> None:
    # given good traffic (one event with a NUL in a label, one sent twice) and a hostile corpus
    # mixed into it, each bad record under its own key
    topics = await make_topics(kafka_broker, 1)
    early = [make_event() for _ in range(20)] + [make_event(gateway_id="gw\x00odd")]
    zeros = make_event(cost=Decimal("0.1"))  # sent with 40 fractional digits, all but one zeros
    late = [make_event() for _ in range(30)]
    corpus = hostile_corpus(counted=early[0])
    bad = [(f"bad:{name}".encode(), value) for name, value in corpus.items()]
    mixed = [record for pair in zip(bad, [(None, e.to_json()) for e in late], strict=False) for record in pair]
    mixed += [(None, e.to_json()) for e in late[len(bad) :]]
    records = [(None, e.to_json()) for e in early] + [(None, early[1].to_json())] + mixed
    records.append((None, orjson.dumps(orjson.loads(zeros.to_json()) | {"cost": "0.1" + "0" * 39})))
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings, **parse_route)

    async with running_aggregator(settings, clickhouse) as (_, metrics):
        # when
        await produce_records(kafka_broker, topics.events, records)
        await eventually(
            lambda: committed_offset(kafka_broker, topics.events, settings.group_id),
            lambda offset: offset == len(records),
            within=90,
            what=f"the commit at the topic's end ({len(records)})",
        )
        letters = await read_topic(kafka_broker, topics.events_dead_letter, expected=len(bad))
        dead_lettered, duplicates = metrics.dead_letters._value.get(), metrics.duplicates._value.get()

    # then every good event is counted once, exactly
    good = [*early, *late, zeros]
    assert counted_events(clickhouse) == len(good)
    assert totals(clickhouse)[("global", "", "")] == sum(e.cost for e in good)
    assert duplicates == 1
    # and every bad record is dead-lettered once, with its key and a reason
    assert sorted(letter.key or b"" for letter in letters) == sorted(key for key, _ in bad)
    assert dead_lettered == len(bad)
    reasons = {letter.key: dict(letter.headers)[DEAD_LETTER_REASON].decode() for letter in letters}
    assert all(reasons.values())
    assert reasons[b"bad:conflicting duplicate"].startswith(
        f"conflicting duplicate: event_id '{early[0].event_id}' was counted from partition 0 offset 0"
    )
    assert "more than 300 s ahead" in reasons[b"bad:dated an hour ahead"]
    assert reasons[b"bad:no value"] == "empty message (no value)"
    huge = next(letter for letter in letters if letter.key == b"bad:about 1 MiB")
    assert dict(huge.headers)[TRUNCATED] == b"value"
    offsets = [int(dict(letter.headers)[SOURCE_OFFSET]) for letter in letters]
    assert len(set(offsets)) == len(bad)


async def test_a_writers_record_times_do_not_set_the_aggregators_wait_figure(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given events written with record times of 1970 and of an hour ahead (Kafka takes both)
    topics = await make_topics(kafka_broker, 1)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    now_ms = int(time.time() * 1000)
    events = [make_event() for _ in range(4)]

    async with running_aggregator(settings, clickhouse) as (_, metrics):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        try:
            for event, stamp in zip(events, (1, 1, now_ms + 3_500_000, now_ms + 3_500_000), strict=True):
                await producer.send_and_wait(topics.events, event.to_json(), timestamp_ms=stamp)
        finally:
            await producer.stop()
        await events_counted(clickhouse, len(events))
        wait = metrics.flush_step_seconds.labels("wait")

    # then the batches waited what they waited: seconds, not 56 years nor less than nothing
    assert wait._sum.get() < 60


async def test_a_transactions_marker_leaves_the_aggregator_neither_behind_nor_unready(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given events written in a transaction: its commit marker takes the partition's last offset,
    # and no reader is handed it
    topics = await make_topics(kafka_broker, 1)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    events = [make_event() for _ in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, transactional_id=f"writer-{uuid.uuid4().hex}")
    await producer.start()
    try:
        async with producer.transaction():
            for event in events:
                await producer.send(topics.events, event.to_json())
    finally:
        await producer.stop()

    # when a fresh aggregator reads them
    async with running_aggregator(settings, clickhouse) as (aggregator, _):
        await events_counted(clickhouse, len(events))

        # then it commits past the marker, and is ready: nothing is behind
        await eventually(
            lambda: committed_offset(kafka_broker, topics.events, settings.group_id),
            lambda offset: offset == len(events) + 1,
            within=30,
            what="the commit past the transaction's marker",
        )
        await eventually(aggregator.not_ready, lambda reason: reason is None, within=30, what="the aggregator ready")
