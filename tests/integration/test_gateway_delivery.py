"""The gateway's delivery guarantees against a real broker: shutdown flushes, the spool outlives
the process, and a full spool is a counted, logged loss, never a silent one."""

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import SpendEvent, decode_event
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings
from tests.support.events import make_event
from tests.support.pipeline import read_topic


def publisher(bootstrap: str, topic: str, spool_dir: Path, spool_bytes: int = 1 << 20) -> EventPublisher:
    return EventPublisher(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topic=topic,
        spool=DiskSpool(directory=spool_dir, max_bytes=spool_bytes),
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(delivery_timeout_s=3.0, retry_backoff_s=0.3),
    )


def ids(records: list[Any]) -> list[str]:
    return [decode_event(r.value).event_id for r in records]


async def delivered_on_close(bootstrap: str, topic: str, events: list[SpendEvent], spool: Path) -> list[Any]:
    """Publish `events`, close, and read them back: each delivered once (else the test fails)."""
    sender = publisher(bootstrap, topic, spool)
    for event in events:
        sender.publish(event)
    assert sender.close()

    delivered = await read_topic(bootstrap, topic, expected=len(events))
    assert sorted(ids(delivered)) == sorted(e.event_id for e in events)
    return delivered


async def test_close_delivers_everything_queued(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    events = [make_event() for _ in range(2_000)]
    await delivered_on_close(kafka_broker, topics.events, events, tmp_path / "spool")


async def test_each_event_lands_on_its_keys_partition(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    """The publisher sends whole record batches per partition; each event still lands where
    Kafka's default partitioner (what a plain `send()` of its key picks) puts its key hash, so
    every event of a key meets the same aggregator's duplicate check, also when replayed."""
    topics = await make_topics(kafka_broker, partitions=3)
    keys = [f"{n:064x}" for n in range(24)]
    events = [make_event(key_hash=keys[n % len(keys)]) for n in range(600)]
    events += [make_event(key_hash=None) for _ in range(20)]
    delivered = await delivered_on_close(kafka_broker, topics.events, events, tmp_path / "spool")
    placed = {(r.key, r.partition) for r in delivered if r.key is not None}
    expected = {(key.encode(), DefaultPartitioner()(key.encode(), [0, 1, 2], [0, 1, 2])) for key in keys}
    assert placed == expected
    assert len({partition for _, partition in expected}) > 1, "the keys should spread over partitions"


async def test_spool_outlives_the_process_and_a_full_spool_is_a_counted_loss(
    kafka_broker: str, make_topics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topics = await make_topics(kafka_broker)
    spool_dir = tmp_path / "spool"
    events = [make_event() for _ in range(100)]
    room = sum(len(e.to_json()) + 1 for e in events[:30])  # space for the first 30

    # given a gateway whose Kafka refuses connections and whose spool holds 30 events
    with socket.socket() as closed_port, caplog.at_level(logging.ERROR):
        closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        unreachable = publisher(f"127.0.0.1:{closed_port.getsockname()[1]}", topics.events, spool_dir, room)
        for event in events:
            unreachable.publish(event)
        assert unreachable.wait_idle(60)
        assert unreachable.close()
    metrics: GatewayMetrics = unreachable._metrics

    # then 30 wait on disk and 70 are lost, counted and logged
    assert GatewayMetrics.total(metrics.spooled) == 30
    assert GatewayMetrics.total(metrics.lost) == 70
    assert "lost" in caplog.text
    assert "spool_full" in caplog.text

    # when the next gateway process starts on the same spool, with Kafka reachable
    successor = publisher(kafka_broker, topics.events, spool_dir)
    fresh = make_event()
    successor.publish(fresh)
    assert successor.wait_idle(60)
    assert successor.close()

    # then the spooled events are delivered too, and the spool is empty
    delivered = await read_topic(kafka_broker, topics.events, expected=31)
    assert sorted(ids(delivered)) == sorted([e.event_id for e in events[:30]] + [fresh.event_id])
    assert [path.name for path in spool_dir.iterdir()] == ["spool.lock"]  # no segment left, only the lock


async def test_a_spool_that_cannot_be_written_is_a_counted_loss_and_the_publisher_lives_on(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    not_a_directory = tmp_path / "spool"
    not_a_directory.write_text("a file where the spool directory should be")
    events = [make_event() for _ in range(20)]

    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        unreachable = publisher(f"127.0.0.1:{closed_port.getsockname()[1]}", topics.events, not_a_directory)
        for event in events:
            unreachable.publish(event)
        assert unreachable.wait_idle(60)
        metrics: GatewayMetrics = unreachable._metrics

        assert GatewayMetrics.total(metrics.lost) == 20
        assert unreachable.running, "the publisher thread survived the spool error"
        assert unreachable.close()
