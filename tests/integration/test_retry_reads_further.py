"""Flushes whose totals landed and whose copies into `events` did not, retried by a restarted
aggregator with a lower batch size: the retries are cut shorter than the failed flushes, and
resends of events counted there arrived meanwhile on the other partition. The aggregator reads
on before it writes a batch holding a resend (`ReadFurtherError`), so every event counts once."""

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import Histogram

from spendpipe.aggregator.store import SpendStore
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import committed_offset, counted_events, running_aggregator, totals
from tests.support.waiting import eventually

RUN = 9
"""Records of each partition before its original: more than the restarted batch size."""


async def produce_to(bootstrap: str, topic: str, records: list[tuple[int, SpendEvent]]) -> None:
    """(partition, event) records, in order."""
    producer = AIOKafkaProducer(
        **KafkaSettings(bootstrap_servers=bootstrap).aiokafka_kwargs(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for partition, event in records:
            await producer.send_and_wait(topic, value=event.to_json(), partition=partition)
    finally:
        await producer.stop()


async def committed(bootstrap: str, topic: str, group_id: str) -> tuple[int | None, int | None]:
    """The group's committed offsets of partitions 0 and 1."""
    return (
        await committed_offset(bootstrap, topic, group_id, 0),
        await committed_offset(bootstrap, topic, group_id, 1),
    )


def observations(histogram: Histogram) -> float:
    """How many values an unlabelled histogram (or one child of a labelled one) observed."""
    (metric,) = histogram.collect()
    return next(sample.value for sample in metric.samples if sample.name.endswith("_count"))


def stored_at(clickhouse: ClickhouseStore, event: SpendEvent) -> list[tuple[int, int]]:
    rows = clickhouse.rows(
        "SELECT kafka_partition, kafka_offset FROM events WHERE event_id = {id:UUID}", {"id": event.event_id}
    )
    return [(int(partition), int(offset)) for partition, offset in rows]


async def test_a_restarted_aggregator_with_a_lower_batch_size_counts_resends_of_counted_events_once(
    kafka_broker: str,
    *,
    make_topics: Any,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topics = await make_topics(kafka_broker, 2)
    # each partition: a run of events, then an original whose resend will come on the other one
    runs = {partition: [make_event() for _ in range(RUN)] for partition in (0, 1)}
    originals = {partition: make_event() for partition in (0, 1)}
    counted = [*runs[0], *runs[1], *originals.values()]
    await produce_to(
        kafka_broker,
        topics.events,
        [(partition, event) for partition in (0, 1) for event in [*runs[partition], originals[partition]]],
    )

    # given an aggregator whose every copy into `events` fails, stopped once its totals hold all
    failures: list[str] = []

    def failing(self: SpendStore, **arguments: Any) -> None:
        failures.append("insert_events failed after the totals insert")
        raise RuntimeError(failures[-1])

    monkeypatch.setattr(SpendStore, "insert_events", failing)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings, retry_backoff_s=0.1, batch_size=1000)
    async with running_aggregator(settings, clickhouse):
        await eventually(
            lambda: asyncio.to_thread(totals, clickhouse, "day"),
            lambda spend: spend == expected_spend(counted, Window.DAY),
            within=60,
            what="the totals of every event, their copy into events failing",
        )
    assert failures
    assert counted_events(clickhouse) == 0
    monkeypatch.undo()

    # when a gateway resends each original on the other partition, and the aggregator restarts
    # with a batch size below the failed flushes': whichever partition its batches take first,
    # the resend on it comes before the other partition's original is read
    await produce_to(kafka_broker, topics.events, [(1 - p, original.model_copy()) for p, original in originals.items()])
    restarted = settings.model_copy(update={"batch_size": 5})
    with caplog.at_level(logging.INFO, logger="spendpipe.aggregator.intake"):
        async with running_aggregator(restarted, clickhouse) as (_, metrics):
            await eventually(
                lambda: committed(kafka_broker, topics.events, settings.group_id),
                lambda offsets: offsets == (RUN + 2, RUN + 2),
                within=60,
                what="every record committed",
            )

    # then each original counts once, and `events` holds it from the record the totals counted
    assert totals(clickhouse, "day") == expected_spend(counted, Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend(counted, Window.MINUTE)
    assert counted_events(clickhouse) == 2 * RUN + 2
    assert [stored_at(clickhouse, originals[p]) for p in (0, 1)] == [[(0, RUN)], [(1, RUN)]]
    # a batch holding a resend was sent back to read the other partition first; handed over
    # again, its records were neither consumed again nor read again
    assert any("reading on before the retry" in record.getMessage() for record in caplog.records)
    assert (metrics.consumed._value.get(), metrics.rereads._value.get()) == (2 * (RUN + 2), 0)
    # nor did they wait again: each flush (all written) observed its records' wait once
    assert observations(metrics.flush_step_seconds.labels("wait")) == observations(metrics.flush_seconds)
