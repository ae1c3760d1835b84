"""Several aggregators in one consumer group over one store: every event counted once
through rebalances (members joining and leaving, partitions added, a member stalled past the
rebalance timeout), and a writer whose partitions moved on while it was stalled writes nothing
when it wakes (`aggregator/ownership`). A stall is a flush held before it writes: what a long
pause, or a member cut off from Kafka but not from ClickHouse, looks like to the store.

The members run in this process, each with its own ClickHouse client and consumer (chDB is one
process); on the ClickHouse server of `SPENDPIPE_TEST_CLICKHOUSE_URL` too, when it is set."""

import asyncio
from collections.abc import Sequence
from typing import NoReturn

import pytest

from spendpipe.aggregator.intake import Flushed
from spendpipe.aggregator.offsets import PartitionOffsets
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import KafkaRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.topics import Topics
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings, on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.fleet import Member, Stream, add_partitions, fleet
from tests.support.pipeline import counted_events, produce, totals
from tests.support.waiting import eventually

pytestmark = on_every_engine

GROUP_TIMING = {
    "session_timeout_ms": 6_000,  # the broker's least
    "max_poll_interval_ms": 5_000,  # also the rebalance timeout: a member stuck in a flush is left out after it
    "metadata_max_age_ms": 500,  # partitions added are seen within a second
    "write_timeout_s": 1,
    "owner_settle_s": 1.5,
    "flush_interval_ms": 20,
    "batch_size": 300,
}


def settings_for(kafka_broker: str, topics: Topics, clickhouse_settings: ClickhouseSettings) -> AggregatorSettings:
    return aggregator_settings(kafka_broker, topics, clickhouse_settings, **GROUP_TIMING)


async def counted(clickhouse: ClickhouseStore) -> int:
    return await asyncio.to_thread(counted_events, clickhouse)


async def count_grows(clickhouse: ClickhouseStore, by: int, what: str) -> None:
    """Wait until `by` more events are counted than now: the fleet writes after the last change."""
    start = await counted(clickhouse)
    await eventually(lambda: counted(clickhouse), lambda n: n >= start + by, within=90, what=what)


def assert_exact(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    assert counted_events(clickhouse) == len(events)
    assert totals(clickhouse, "day") == expected_spend(events, Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend(events, Window.MINUTE)
    assert totals(clickhouse)[("global", "", "")] == sum(e.cost for e in events)


async def test_aggregators_joining_and_leaving_while_events_stream_count_each_event_once(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given a group of aggregators over one store, and events streaming to 3 partitions
    topics = await make_topics(kafka_broker, 3)
    settings = settings_for(kafka_broker, topics, clickhouse_settings)
    async with fleet(settings, 4) as (a, b, c, d), Stream(kafka_broker, topics.events, make_event) as stream:
        await a.start()
        await count_grows(clickhouse, 300, "the first aggregator counting")

        # when members join, partitions are added, members leave, each while events stream
        await b.start()
        await count_grows(clickhouse, 600, "counting after b joined")
        await c.start()
        await count_grows(clickhouse, 600, "counting after c joined")
        await add_partitions(kafka_broker, topics.events, 5)
        await count_grows(clickhouse, 900, "counting after partitions were added")
        await a.stop()
        await count_grows(clickhouse, 600, "counting after a left")
        await d.start()
        await count_grows(clickhouse, 600, "counting after d joined")
        # c stalls with a batch in hand (a long pause; cut off from Kafka but not from ClickHouse)
        # while b leaves: the group gives c's partitions away after the rebalance timeout
        stall = c.stall()
        await eventually(stall.stalled.is_set, bool, within=30, what="c holding a batch")
        await b.stop()
        await count_grows(clickhouse, 900, "counting after b left, without c")
        stall.release.set()  # c wakes and writes the batch it held
        await eventually(lambda: stall.result, bool, within=30, what="c's held flush to end")
        await count_grows(clickhouse, 300, "counting after c woke")
        await stream.stop()

        # then every event produced is counted, once, and the totals are their exact sums
        produced = stream.events
        await eventually(
            lambda: counted(clickhouse), lambda n: n >= len(produced), within=90, what=f"{len(produced)} events"
        )
        members: list[Member] = [a, b, c, d]
        await eventually(
            lambda: sum(m.counted for m in members), lambda n: n >= len(produced), within=30, what="metrics caught up"
        )
    assert_exact(clickhouse, produced)
    assert sum(m.counted for m in members) == len(produced)
    assert sum(1 for m in members if m.counted > 0) >= 3  # the work was shared, not done by one
    partitions = clickhouse.column("SELECT DISTINCT kafka_partition FROM events ORDER BY kafka_partition")
    assert partitions == [0, 1, 2, 3, 4]  # the partitions added were read too
    # and c's held batch was written only if no one else held its partitions when c woke: whether
    # the group moved them on while c stalled, or gave them back to c (which then claimed them
    # again), depends on the rebalance's timing
    assert stall.moved_on is not None
    assert stall.result is (Flushed.OWNERSHIP_LOST if stall.moved_on else Flushed.WRITTEN)


async def test_a_writer_stalled_while_its_partitions_moved_on_writes_nothing_when_it_wakes(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given one aggregator that counted a first batch
    topics = await make_topics(kafka_broker, 2)
    settings = settings_for(kafka_broker, topics, clickhouse_settings)
    first = [make_event() for _ in range(100)]
    second = [make_event() for _ in range(100)]
    async with fleet(settings, 2) as (stale, heir):
        await stale.start()
        await produce(kafka_broker, topics.events, [e.to_json() for e in first])
        await eventually(lambda: counted(clickhouse), lambda n: n >= 100, within=60, what="the first batch")

        # when its next flush stalls with the second batch in hand, past the rebalance timeout
        stall = stale.stall()
        await produce(kafka_broker, topics.events, [e.to_json() for e in second])
        await eventually(stall.stalled.is_set, bool, within=30, what="the stale writer holding the second batch")
        # and another aggregator joins: the group leaves the stalled one out and gives it all
        await heir.start()
        await eventually(lambda: counted(clickhouse), lambda n: n >= 200, within=60, what="the heir's flush")

        # and the stalled writer wakes and writes the batch it held
        stall.release.set()
        await eventually(lambda: stall.result, bool, within=30, what="the stale flush to end")

        # then its write was a no-op, reported as lost ownership: each event once
        assert_exact(clickhouse, first + second)
        assert stall.result is Flushed.OWNERSHIP_LOST
        assert stale.ownership_lost == 1
        assert heir.counted == 100
        assert stale.counted == 100

        # and the group goes on counting, the woken aggregator with it
        third = [make_event() for _ in range(100)]
        await produce(kafka_broker, topics.events, [e.to_json() for e in third])
        await eventually(lambda: counted(clickhouse), lambda n: n >= 300, within=60, what="the third batch")
        assert_exact(clickhouse, first + second + third)


async def test_a_failed_flush_whose_retry_is_fenced_is_not_ready_for_the_group_not_for_the_failure(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given one aggregator that counted a first batch
    topics = await make_topics(kafka_broker, 2)
    settings = settings_for(kafka_broker, topics, clickhouse_settings)
    first = [make_event() for _ in range(100)]
    second = [make_event() for _ in range(100)]
    async with fleet(settings, 2) as (stale, heir):
        await stale.start()
        await produce(kafka_broker, topics.events, [e.to_json() for e in first])
        await eventually(lambda: counted(clickhouse), lambda n: n >= 100, within=60, what="the first batch")

        # when its next flush fails, and its retry stalls while its partitions move on
        assert stale.aggregator is not None
        aggregator = stale.aggregator
        flush = aggregator.intake._flush
        calls: list[str] = []
        held, release = asyncio.Event(), asyncio.Event()
        after_retry: list[tuple[Flushed, str | None]] = []

        def refused(*_: object, **__: object) -> NoReturn:
            raise RuntimeError("ClickHouse refused the insert")

        async def fail_then_stall(records: Sequence[KafkaRecord], offsets: PartitionOffsets) -> Flushed:
            calls.append("flush")
            if len(calls) == 1:
                monkeypatch.setattr(aggregator.writer, "write", refused)
                try:
                    return await flush(records, offsets)
                finally:
                    monkeypatch.undo()
            if len(calls) == 2:
                held.set()
                await release.wait()
                result = await flush(records, offsets)
                after_retry.append((result, aggregator.not_ready()))  # before anything else runs
                return result
            return await flush(records, offsets)

        aggregator.intake._flush = fail_then_stall
        await produce(kafka_broker, topics.events, [e.to_json() for e in second])
        await eventually(held.is_set, bool, within=30, what="the failed flush's retry held")
        await heir.start()
        await eventually(lambda: counted(clickhouse), lambda n: n >= 200, within=60, what="the heir's flush")
        release.set()
        await eventually(lambda: after_retry, bool, within=30, what="the retry to end")

        # then readiness says it waits for the group, not that the last flush failed
        (result, readiness) = after_retry[0]
        assert result is Flushed.OWNERSHIP_LOST
        assert readiness is not None
        assert readiness.startswith("waiting for the group to reassign partitions: partitions ")
        assert readiness.endswith("were claimed by another aggregator")
        assert_exact(clickhouse, first + second)
