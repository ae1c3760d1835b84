"""The publisher's thread sleeps while there is nothing to do and a hand-over wakes it: no idle
polling, and no event left waiting behind a sleeping thread. Kafka is unreachable here (nothing
listens), so what is handed over goes to the spool, and `wait_idle` sees it handled."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import Deferred, EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings
from tests.support.events import make_event
from tests.support.waiting import eventually_sync

WITHIN_S = 10.0


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[EventPublisher]:
    sender = EventPublisher(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # nothing listens
        topic="spend.events",
        spool=DiskSpool(directory=tmp_path, max_bytes=1 << 20),
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        # Kafka is not tried again within the test, so nothing but a hand-over can wake the thread
        options=PublisherOptions(delivery_timeout_s=1.0, retry_backoff_s=3600.0),
    )
    yield sender
    assert sender.close(timeout=WITHIN_S)


def asleep(sender: EventPublisher) -> None:
    eventually_sync(lambda: sender._asleep, bool, within=WITHIN_S, what="the publisher's thread asleep")


def test_a_hand_over_wakes_the_sleeping_thread(publisher: EventPublisher) -> None:
    publisher.start()
    asleep(publisher)

    publisher.publish(make_event())
    built = threading.Event()

    def build() -> SpendEvent:
        built.set()
        return make_event()

    publisher.publish_deferred(build)

    assert publisher.wait_idle(WITHIN_S), "the handed-over events were neither delivered nor spooled"
    assert built.is_set()
    assert GatewayMetrics.total(publisher._metrics.spooled) == 2


def test_an_idle_publisher_does_not_poll(publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher.start()
    publisher.publish(make_event())
    assert publisher.wait_idle(WITHIN_S)
    asleep(publisher)
    looks: list[float] = []
    take = publisher._take

    def counted(limit: int) -> list[SpendEvent | Deferred]:
        looks.append(time.monotonic())
        return take(limit)

    monkeypatch.setattr(publisher, "_take", counted)

    threading.Event().wait(0.5)  # an idle half second: the window in which nothing may happen

    assert looks == [], f"the idle publisher looked at its queue {len(looks)} times"
    assert publisher._asleep
