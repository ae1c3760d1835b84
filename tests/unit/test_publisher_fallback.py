"""`SPENDPIPE_PUBLISHER=auto` where no publisher child can be started: a `sys.executable` that is not
a Python interpreter (uWSGI's own binary) is never run; the calls go to the in-thread publisher,
those handed over before the fallback and after it, each built and accounted once, with one
warning. And which publisher `auto` is where a child can be started."""

import logging
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.recording import publisher_process
from spendpipe.gateway.recording.event_builder import Recorded
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.publisher_process import ProcessPublisher, python_interpreter
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.kafka import KafkaSettings
from tests.support.waiting import eventually_sync
from tests.unit.test_event_builder import logging_object

UNREACHABLE = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # refused at once: events are spooled
WITHIN_S = 10.0


def test_only_a_python_interpreter_is_taken_for_one() -> None:
    assert python_interpreter(sys.executable)
    assert not python_interpreter("/usr/local/bin/uwsgi")
    assert not python_interpreter("")
    assert not python_interpreter(None)
    assert not python_interpreter("/no/such/dir/python3.11")  # named so, but not there to run


def call(n: int) -> dict[str, object]:
    return {"standard_logging_object": logging_object(litellm_call_id=f"call-{n}"), "litellm_call_id": f"call-{n}"}


def publisher_to_spool(
    spool: Path,
    metrics: GatewayMetrics,
    options: PublisherOptions,
    *,
    fallback: bool = True,
    restart_backoff_s: float = 0.5,
) -> ProcessPublisher:
    """A subprocess publisher as `auto` makes it (with `fallback`, an in-thread publisher), whose
    Kafka is unreachable: what it takes is spooled in `spool`."""

    def in_thread() -> EventPublisher:
        return EventPublisher(
            kafka=UNREACHABLE,
            topic="spend.events",
            spool=DiskSpool(directory=spool, max_bytes=1 << 20),
            metrics=metrics,
            options=options,
        )

    return ProcessPublisher(
        kafka=UNREACHABLE,
        topic="spend.events",
        spool_dir=spool,
        spool_max_bytes=1 << 20,
        gateway_id="g",
        metrics=metrics,
        options=options,
        fallback=in_thread if fallback else None,
        restart_backoff_s=restart_backoff_s,
    )


def test_where_sys_executable_is_not_python_auto_publishes_from_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given a process whose sys.executable is a program that is not Python, as uWSGI's is
    ran = tmp_path / "uwsgi-ran"
    uwsgi = tmp_path / "uwsgi"
    uwsgi.write_text(f"#!/bin/sh\ntouch {ran}\n")
    uwsgi.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(uwsgi))
    caplog.set_level(logging.WARNING, logger=publisher_process.__name__)
    metrics = GatewayMetrics(registry=CollectorRegistry())
    sender = publisher_to_spool(tmp_path / "spool", metrics, PublisherOptions(delivery_timeout_s=2.0))
    accounted: list[Recorded] = []
    sender.account = accounted.append

    # when calls are recorded before and after the publisher finds it cannot start a child
    sender.record(call(1))
    assert sender.wait_idle(30)
    sender.record(call(2))
    assert sender.close(30)

    # then that program never ran, and the in-thread publisher took every call, once
    assert not ran.exists()
    assert sender.fell_back
    assert sender.child_pid is None
    assert sorted(recorded.call_id or "" for recorded in accounted) == ["call-1", "call-2"]
    assert GatewayMetrics.total(metrics.spooled) == 2
    assert GatewayMetrics.total(metrics.lost) == 0
    said = [record.getMessage() for record in caplog.records if record.name == publisher_process.__name__]
    assert len(said) == 1
    assert "cannot start its publisher process" in said[0]
    assert str(uwsgi) in said[0]


def test_a_fallback_taken_after_close_stopped_waiting_spools_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a first child that never says it started and ignores its stdin closing (it waits on
    # nothing until it is killed: a hung child is the thing under test), waited for 2 s
    (tmp_path / "silent_child.py").write_text("import threading\nthreading.Event().wait()\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(publisher_process, "CHILD_MODULE", "silent_child")
    monkeypatch.setattr(publisher_process, "HANDSHAKE_S", 2.0)
    metrics = GatewayMetrics(registry=CollectorRegistry())
    sender = publisher_to_spool(tmp_path / "spool", metrics, PublisherOptions(delivery_timeout_s=30.0))
    sender.record(call(1))

    # when the gateway closes and stops waiting before the publisher gives up on that child
    assert not sender.close(0.2)

    # then the fallback it takes afterwards spools the call at once and stops: no thread left
    def state() -> dict[str, object]:
        spooled, lost = GatewayMetrics.total(metrics.spooled), GatewayMetrics.total(metrics.lost)
        return {"fell back": sender.fell_back, "running": sender.running, "spooled": spooled, "lost": lost}

    stopped = {"fell back": True, "running": False, "spooled": 1, "lost": 0}
    eventually_sync(state, lambda now: now == stopped, within=20, what="the fallback stopped, the call spooled")


def test_wait_idle_during_the_fallback_waits_for_the_calls_handed_over_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a publisher that falls back (sys.executable is not Python), and a call handed over
    # before the fallback's thread moved the queued calls to the in-thread publisher
    monkeypatch.setattr(sys, "executable", "/usr/local/bin/uwsgi")
    metrics = GatewayMetrics(registry=CollectorRegistry())
    sender = publisher_to_spool(tmp_path / "spool", metrics, PublisherOptions(delivery_timeout_s=1.0))
    moving, resume = threading.Event(), threading.Event()
    to_inline = sender._to_inline

    def held_on_its_thread(inline: EventPublisher) -> None:
        if threading.current_thread().name == "spendpipe-publisher" and not moving.is_set():
            moving.set()  # the fallback is taken, and its thread descheduled before the move
            resume.wait(WITHIN_S)
        to_inline(inline)

    monkeypatch.setattr(sender, "_to_inline", held_on_its_thread)
    sender.record(call(1))
    assert moving.wait(WITHIN_S), "the publisher never fell back"

    # when the gateway waits for what it handed over
    try:
        idle = sender.wait_idle(WITHIN_S)
        spooled = GatewayMetrics.total(metrics.spooled)
    finally:
        resume.set()

    # then the call was handled (spooled: Kafka is unreachable) before wait_idle said so
    assert idle
    assert spooled == 1
    assert sender.close(WITHIN_S)


def test_auto_is_the_child_under_install_and_in_a_proxy_and_the_thread_in_a_logger_built_by_hand(
    tmp_path: Path,
) -> None:
    settings = GatewaySettings(kafka=UNREACHABLE, spool_dir=tmp_path)

    def publisher(settings: GatewaySettings, *, sdk: bool = False, auto_child: bool = False) -> object:
        return SpendpipeLogger.from_settings(settings, sdk=sdk, auto_child=auto_child).publisher  # built, not started

    assert isinstance(publisher(settings, sdk=True), ProcessPublisher)  # spendpipe.install()
    assert isinstance(publisher(settings, auto_child=True), ProcessPublisher)  # spendpipe.gateway.proxy.handler
    assert isinstance(publisher(settings), EventPublisher)
    in_thread = settings.model_copy(update={"publisher": "thread"})
    assert isinstance(publisher(in_thread, sdk=True), EventPublisher)
    assert isinstance(publisher(in_thread, auto_child=True), EventPublisher)
