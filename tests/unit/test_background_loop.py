"""The background loop starts and stops from any thread, in any order; a stopped one never starts
again, and what its coroutine left running is cancelled when it ends."""

import asyncio
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings
from tests.support.events import make_event


def running(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def forever(started: threading.Event | None = None) -> BackgroundLoop:
    async def main() -> None:
        if started is not None:
            started.set()
        await asyncio.Event().wait()

    return BackgroundLoop(name="spendpipe-test-loop", main=main)


def test_a_stop_right_after_start_ends_the_thread() -> None:
    for _ in range(20):  # the thread may or may not have begun running when stop() comes
        background = forever()
        assert background.start()

        assert background.stop(timeout=5)
        assert running("spendpipe-test-loop") == []


def test_stop_before_start_and_twice_is_harmless_and_a_stopped_loop_never_starts() -> None:
    background = forever()

    assert background.stop(timeout=1)
    assert not background.start()
    assert background.stop(timeout=1)
    assert not background.alive
    assert running("spendpipe-test-loop") == []


def test_start_twice_starts_one_thread() -> None:
    background = forever()
    try:
        assert background.start()
        assert not background.start()

        assert len(running("spendpipe-test-loop")) == 1
    finally:
        background.stop(timeout=5)


def test_a_stop_from_another_thread_ends_a_running_loop() -> None:
    started = threading.Event()
    background = forever(started)
    background.start()
    assert started.wait(5)
    assert background.alive
    stopped: list[bool] = []

    stopper = threading.Thread(target=lambda: stopped.append(background.stop(timeout=5)))
    stopper.start()
    stopper.join(10)

    assert stopped == [True]
    assert not background.alive
    assert running("spendpipe-test-loop") == []


def test_stop_without_cancel_waits_for_the_coroutine_to_end_by_itself() -> None:
    finish = threading.Event()
    ended: list[str] = []

    async def main() -> None:
        await asyncio.to_thread(finish.wait, 10)
        ended.append("by itself")

    background = BackgroundLoop(name="spendpipe-test-loop", main=main)
    background.start()

    assert not background.stop(timeout=0.2, cancel=False), "still running: nothing told it to end"
    finish.set()
    assert background.stop(timeout=5, cancel=False)
    assert ended == ["by itself"]


async def answer() -> str:
    return "ran"


def test_submit_runs_on_the_loop_and_fails_once_it_ended() -> None:
    background = forever()
    with pytest.raises(RuntimeError, match="not started"):
        background.submit(answer())
    background.start()

    assert background.submit(answer()).result(timeout=5) == "ran"
    background.stop(timeout=5)
    with pytest.raises(RuntimeError):
        background.submit(answer())


def test_tasks_the_coroutine_left_running_are_cancelled_when_it_ends() -> None:
    cancelled = threading.Event()

    async def left_behind(waiting: asyncio.Event) -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        waiting = asyncio.Event()
        asyncio.get_running_loop().create_task(left_behind(waiting))
        await waiting.wait()  # main ends with the task parked in its wait

    background = BackgroundLoop(name="spendpipe-test-loop", main=main)
    background.start()

    assert background.stop(timeout=5, cancel=False)
    assert cancelled.is_set()


def test_a_publisher_closed_before_it_started_never_starts_and_counts_what_comes_after(tmp_path: Path) -> None:
    metrics = GatewayMetrics(registry=CollectorRegistry())
    publisher = EventPublisher(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # nothing listens
        topic="spend.events",
        spool=DiskSpool(directory=tmp_path, max_bytes=1 << 20),
        metrics=metrics,
        options=PublisherOptions(),
    )

    assert publisher.close(timeout=1)
    publisher.publish(make_event())

    assert not publisher.running
    assert GatewayMetrics.total(metrics.lost) == 1
