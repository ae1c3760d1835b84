"""The gateway's sessions log starts and stops from any thread, in any order, without Kafka."""

import threading

from spendpipe.gateway.sessions.ledger import SessionLedger
from spendpipe.gateway.sessions.session_log import SessionLog
from spendpipe.platform.kafka import KafkaSettings


def session_log() -> SessionLog:
    return SessionLog(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # nothing listens: it would retry for ever
        topic="spend.sessions",
        ledger=SessionLedger(idle_s=60, lease_s=60),
    )


def running() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spendpipe-sessions"]


def test_a_stop_right_after_start_ends_the_thread() -> None:
    for _ in range(20):  # the thread may or may not have begun running when stop() comes
        sessions = session_log()
        sessions.start()
        sessions.stop(timeout=5)

        assert running() == []


def test_stop_before_start_is_harmless_and_a_stopped_log_stays_stopped() -> None:
    sessions = session_log()
    sessions.stop(timeout=1)
    sessions.start()
    sessions.stop(timeout=1)

    assert running() == []
