"""A gateway's block list fed by the real decisions topic, as the plugin holds it."""

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from spendpipe.contracts.decisions import Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.platform.kafka import KafkaSettings


@contextlib.contextmanager
def following_blocklist(bootstrap: str, topic: str) -> Iterator[BlockList]:
    blocklist = BlockList()
    follower = DecisionFollower(kafka=KafkaSettings(bootstrap_servers=bootstrap), topic=topic, blocklist=blocklist)
    follower.start()
    try:
        yield blocklist
    finally:
        follower.stop()


def latest(blocklist: BlockList, key: str) -> Decision | None:
    return blocklist._decisions.get(key)


def at(clock_seconds: float) -> datetime:
    return datetime.fromtimestamp(clock_seconds, UTC)
