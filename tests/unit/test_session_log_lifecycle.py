"""The gateway's sessions log starts and stops from any thread, in any order, without Kafka; it
applies only records filed under their session's key."""

import threading

from aiokafka import ConsumerRecord

from spendpipe.contracts.sessions import SessionRecord
from spendpipe.gateway.sessions.ledger import SessionLedger
from spendpipe.gateway.sessions.session_log import SessionLog
from spendpipe.platform.compacted import TopicRecord
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


def test_a_record_filed_under_another_sessions_key_is_ignored() -> None:
    """On another partition than its session's records, gateways could apply it at different points."""
    sessions = session_log()
    record = SessionRecord(kind="reserve", agent_id="a", session_id="s", call_id="c1", max_iterations=3)

    def filed_under(key: bytes) -> TopicRecord:
        value = record.model_dump_json().encode()
        return ConsumerRecord("spend.sessions", 0, 0, 1_000, 1, key, value, None, len(key), len(value), ())

    sessions._apply(filed_under(b"a|other"))
    assert sessions.live_sessions() == 0
    sessions._apply(filed_under(record.key.encode()))
    assert sessions.live_sessions() == 1
