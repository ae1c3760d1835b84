"""A gateway's block list fed by the real decisions topic, as the plugin holds it."""

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from spendpipe.contracts.decisions import MESSAGE_TYPE, Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import SigningSettings
from tests.support.signing import signing_from_environment


@contextlib.contextmanager
def following_blocklist(
    bootstrap: str, topic: str, *, signing: SigningSettings | None = None, metrics: GatewayMetrics | None = None
) -> Iterator[BlockList]:
    """A gateway's block list and its follower, verifying as the plugin does (with the session's
    keys unless `signing` says otherwise)."""
    blocklist = BlockList()
    metrics = metrics or GatewayMetrics(registry=CollectorRegistry())
    verifier = (signing or signing_from_environment()).verifier(
        message_type=MESSAGE_TYPE, topic=topic, rejected=metrics.records_rejected
    )
    follower = DecisionFollower(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), topic=topic, blocklist=blocklist, verifier=verifier
    )
    follower.start()
    try:
        yield blocklist
    finally:
        follower.stop()


def latest(blocklist: BlockList, key: str) -> Decision | None:
    return blocklist._decisions.get(key)


def at(clock_seconds: float) -> datetime:
    return datetime.fromtimestamp(clock_seconds, UTC)
