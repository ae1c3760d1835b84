"""A hand-over that races `close()` is delivered, spooled or counted as lost: never left in a queue
no thread will take. Each test forces one interleaving of the request thread and the publisher's
thread (Kafka is unreachable here, so what is taken is spooled):

* the hand-over and the `close()` land after the thread found its queue empty and before it looked
  at the stop flag: the thread must look at the queue again, and spool the call;
* the hand-over passed its `closed` check before `close()` and appends after the thread ended: the
  hand-over itself counts it as lost (`closed`), in the in-thread publisher and in the one that
  hands calls to a child process."""

import collections
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording import publisher_process
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.publisher_process import ProcessPublisher
from spendpipe.gateway.recording.spool import DiskSpool
from tests.support.events import make_event
from tests.support.waiting import eventually_sync
from tests.unit.test_publisher_fallback import UNREACHABLE, call, publisher_to_spool

WITHIN_S = 10.0
OPTIONS = PublisherOptions(delivery_timeout_s=1.0, retry_backoff_s=3600.0)


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[EventPublisher]:
    sender = EventPublisher(
        kafka=UNREACHABLE,
        topic="spend.events",
        spool=DiskSpool(directory=tmp_path, max_bytes=1 << 20),
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=OPTIONS,
    )
    yield sender
    sender.close(timeout=WITHIN_S)


@pytest.fixture
def process_publisher(tmp_path: Path) -> Iterator[ProcessPublisher]:
    sender = publisher_to_spool(tmp_path, GatewayMetrics(registry=CollectorRegistry()), OPTIONS, fallback=False)
    yield sender
    sender.close(timeout=WITHIN_S)


def outcome(sender: EventPublisher | ProcessPublisher) -> dict[str, object]:
    """What the gateway's metrics say became of the calls: spooled, and lost by reason."""
    metrics = sender._metrics
    lost = {
        sample.labels["reason"]: sample.value
        for metric in metrics.lost.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }
    return {"spooled": GatewayMetrics.total(metrics.spooled), "lost": lost}


def test_a_call_handed_over_as_the_thread_found_nothing_is_spooled_by_close(
    publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    found_nothing, resume = threading.Event(), threading.Event()
    take = publisher._take

    def take_then_pause(limit: int) -> list[object]:
        taken = take(limit)
        if not taken and not found_nothing.is_set():  # the first empty look: let the request thread in
            found_nothing.set()
            resume.wait(WITHIN_S)
        return taken  # type: ignore[return-value]

    monkeypatch.setattr(publisher, "_take", take_then_pause)
    publisher.start()
    assert found_nothing.wait(WITHIN_S), "the publisher's thread never looked at its queue"

    # when a call is handed over, and the gateway closes, between that look and the next
    publisher.publish(make_event())
    closed = publisher.close(0.0)  # spool at once: Kafka gets no time
    resume.set()

    # then the thread spools the call before it stops
    assert not closed  # it could not have stopped: it was held
    assert publisher._background.stop(WITHIN_S), "the publisher's thread did not stop"
    assert outcome(publisher) == {"spooled": 1, "lost": {}}


class AppendAfter(collections.deque[object]):
    """A queue whose next append waits until `before` ran: the request thread descheduled between
    its `closed` check and its append while the gateway closed."""

    def __init__(self, before: object) -> None:
        super().__init__()
        self.before = before

    def append(self, item: object) -> None:
        before, self.before = self.before, None
        if callable(before):
            before()
        super().append(item)


def test_a_call_appended_after_the_thread_ended_is_counted_as_lost(publisher: EventPublisher) -> None:
    publisher.start()
    stopped: list[bool] = []
    publisher._queue = AppendAfter(lambda: stopped.append(publisher.close(WITHIN_S)))  # type: ignore[assignment]

    # when a call's hand-over appends only after `close()` ended the thread
    publisher.publish(make_event())

    # then it is counted as lost (closed), at once, and nothing is left outstanding
    assert stopped == [True]
    assert outcome(publisher) == {"spooled": 0, "lost": {"closed": 1}}
    assert len(publisher._queue) == 0
    assert publisher.wait_idle(0.0)


def test_a_call_appended_after_the_child_publishers_thread_ended_is_counted_as_lost(
    process_publisher: ProcessPublisher,
) -> None:
    process_publisher.start()
    process_publisher.record(call(1))
    assert process_publisher.wait_idle(WITHIN_S), "the child never reported the first call"
    stopped: list[bool] = []
    process_publisher._queue = AppendAfter(lambda: stopped.append(process_publisher.close(WITHIN_S)))  # type: ignore[assignment]

    # when a call's hand-over appends only after `close()` ended the thread (and its child)
    process_publisher.record(call(2))

    # then it is counted as lost (closed), at once: the first call was spooled by the child
    assert stopped == [True]
    assert outcome(process_publisher) == {"spooled": 1, "lost": {"closed": 1}}
    assert len(process_publisher._queue) == 0
    assert process_publisher.wait_idle(0.0)


def test_a_child_that_keeps_dying_does_not_outlast_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given children that die at once, every one (their module cannot be imported), and a call
    monkeypatch.setattr(publisher_process, "CHILD_MODULE", "spendpipe.no_such_module")
    metrics = GatewayMetrics(registry=CollectorRegistry())
    sender = publisher_to_spool(tmp_path, metrics, OPTIONS, fallback=False, restart_backoff_s=0.2)
    sender.record(call(1))
    eventually_sync(lambda: sender.restarts, lambda n: n >= 1, within=WITHIN_S, what="a child started again")

    # when the gateway closes, giving it one second
    sender.close(1.0)

    # then the publisher starts no child after that second (one started just before it may still
    # be dying), its thread ends, and the call is counted as lost
    eventually_sync(lambda: sender.running, lambda running: not running, within=WITHIN_S, what="the thread ended")
    assert outcome(sender) == {"spooled": 0, "lost": {"closed": 1}}


def test_a_thread_ended_by_an_unexpected_error_counts_the_batch_it_held(
    publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(producer: object, payloads: object) -> None:
        raise RuntimeError("a bug in the publisher")

    monkeypatch.setattr(publisher, "_send_or_spool", broken)

    # when the thread fails on a batch, and a call comes after it ended
    publisher.publish(make_event())
    eventually_sync(lambda: publisher.running, lambda running: not running, within=WITHIN_S, what="the thread ended")
    publisher.publish(make_event())

    # then each is counted as lost, with what became of it, and nothing is left outstanding
    assert outcome(publisher) == {"spooled": 0, "lost": {"publisher_failed": 1, "closed": 1}}
    assert publisher.wait_idle(0.0)


HUNG_CHILD = """
import os, sys
from spendpipe.gateway.recording.wire import Report, length_frame
reports = os.fdopen(os.dup(1), "wb")
reports.write(length_frame(Report(handled=0, spool_empty=True, kafka_down=False)))  # the start handshake
reports.flush()
while sys.stdin.buffer.read(1 << 16):  # then reads every call and never reports one
    pass
"""


def test_a_child_that_stops_reporting_is_replaced_and_its_calls_sent_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a first child that starts, takes calls and never reports them, taken as hung after 10 s
    # (time enough for the working child that replaces it to start and report on a loaded machine)
    (tmp_path / "hung_child.py").write_text(HUNG_CHILD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(publisher_process, "CHILD_MODULE", "hung_child")
    monkeypatch.setattr(publisher_process, "REPORT_SILENCE_S", 10.0)
    metrics = GatewayMetrics(registry=CollectorRegistry())
    sender = publisher_to_spool(tmp_path / "spool", metrics, OPTIONS, fallback=False, restart_backoff_s=0.1)
    sender.start()
    eventually_sync(lambda: sender._handshook, bool, within=WITHIN_S, what="the hung child's start handshake")
    monkeypatch.setattr(publisher_process, "CHILD_MODULE", "spendpipe.gateway.recording.publisher_child")

    # when a call is handed over
    sender.record(call(1))

    # then the hung child is ended and the next one, a working child, spools the call
    eventually_sync(lambda: outcome(sender), lambda now: now["spooled"] == 1, within=60, what="the call spooled")
    assert sender.restarts == 1
    assert outcome(sender) == {"spooled": 1, "lost": {}}
    assert sender.close(WITHIN_S)
