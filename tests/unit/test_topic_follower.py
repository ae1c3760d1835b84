"""A gateway's topic follower starts and stops from any thread, in any order, without Kafka."""

import threading

from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.topic_follower import TopicFollower


def follower() -> TopicFollower:
    return TopicFollower(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # nothing listens: it would retry for ever
        topic="spend.budgets",
        on_record=lambda record: None,
        in_sync=threading.Event(),
        name="test",
        retry_backoff_s=3600,
    )


def test_a_stop_right_after_start_ends_the_thread() -> None:
    for _ in range(20):  # the thread may or may not have begun running when stop() comes
        following = follower()
        following.start()
        following.stop(timeout=5)

        assert [t for t in threading.enumerate() if t.name == "spendpipe-test"] == []


def test_stop_before_start_and_twice_is_harmless_and_a_stopped_follower_stays_stopped() -> None:
    following = follower()
    following.stop(timeout=1)
    following.start()
    following.stop(timeout=1)

    assert [t for t in threading.enumerate() if t.name == "spendpipe-test"] == []
