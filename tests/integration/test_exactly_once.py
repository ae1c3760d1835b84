"""Exactly once: the same event id delivered twice, in one batch or in two, counts once."""

from decimal import Decimal

from spendpipe.contracts.flushes import ScopesFlushed
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import counted_events, produce, read_topic, running_aggregator, totals
from tests.support.waiting import eventually


async def test_same_event_id_published_twice_is_counted_once(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given events, each published twice: back to back, and again in a later batch
    topics = await make_topics(kafka_broker)
    events = [make_event() for _ in range(200)]
    payloads = [event.to_json() for event in events]
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)

    async with running_aggregator(settings, clickhouse) as (_, metrics):
        # when
        await produce(kafka_broker, topics.events, [p for p in payloads for _ in range(2)])
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= 200, within=60, what="200 events")
        await produce(kafka_broker, topics.events, payloads[:50])
        await eventually(
            metrics.duplicates._value.get,
            lambda n: n >= 250,
            within=60,
            what="250 duplicates dropped",
        )

    # then: each event once, and every total equals the plain sum of its events
    assert counted_events(clickhouse) == 200
    assert totals(clickhouse, "day") == expected_spend(events, Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend(events, Window.MINUTE)
    assert sum(e.cost for e in events) == totals(clickhouse)[("global", "", "")] > Decimal(0)

    # and the flushes announced every scope whose totals changed, each event once
    announcements = [
        ScopesFlushed.model_validate_json(record.value)
        for record in await read_topic(kafka_broker, topics.flushes, expected=1)
    ]
    assert sum(a.events for a in announcements) == 200
    announced = {(ref.type, ref.id) for a in announcements for ref in a.scopes}
    assert announced == {(t, i) for t, i, _ in expected_spend(events, Window.DAY)}
    assert {m for a in announcements for m in a.models} == {e.model for e in events}
