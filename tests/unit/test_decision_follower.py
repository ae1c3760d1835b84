"""A gateway's decisions follower applying records read from the topic, alone: records are built
in memory, signed (or not) as a writer would; the follower is never started."""

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from spendpipe.contracts.decisions import MESSAGE_TYPE, Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.platform.kafka import KafkaSettings
from tests.support.signing import WriterKey, forged_headers

ENFORCER = WriterKey.generate()
TOPIC = "spend.decisions"
BLOCK = Decision(scope="team:eng", version=3, blocked=True, reason="test", decided_at=datetime.now(UTC))


def follower() -> tuple[DecisionFollower, BlockList, GatewayMetrics]:
    blocklist, metrics = BlockList(), GatewayMetrics(registry=CollectorRegistry())
    verifier = ENFORCER.settings(ENFORCER).verifier(
        message_type=MESSAGE_TYPE, topic=TOPIC, rejected=metrics.records_rejected
    )
    made = DecisionFollower(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"), topic=TOPIC, blocklist=blocklist, verifier=verifier
    )
    return made, blocklist, metrics


def record(key: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    return SimpleNamespace(key=key.encode(), value=value, headers=headers, offset=0)


def rejected(metrics: GatewayMetrics, reason: str) -> float:
    return float(metrics.records_rejected.labels(topic=TOPIC, reason=reason)._value.get())


@pytest.mark.parametrize("how", ["unsigned", "unknown_key", "bad_signature"])
def test_a_forged_tombstone_is_counted_and_takes_no_block_away(how: str) -> None:
    made, blocklist, metrics = follower()
    value = BLOCK.model_dump_json().encode()
    made._on_record(
        record(BLOCK.key, value, ENFORCER.settings().signer().headers(MESSAGE_TYPE, BLOCK.key.encode(), value))
    )

    made._on_record(
        record(BLOCK.key, None, forged_headers(MESSAGE_TYPE, BLOCK.key.encode(), None, how, genuine=ENFORCER))
    )

    assert rejected(metrics, how) == 1
    assert blocklist.blocking([BLOCK.key]) == BLOCK


def test_the_enforcers_tombstone_is_not_counted_and_takes_no_block_away() -> None:
    made, blocklist, metrics = follower()
    value = BLOCK.model_dump_json().encode()
    signer = ENFORCER.settings().signer()
    made._on_record(record(BLOCK.key, value, signer.headers(MESSAGE_TYPE, BLOCK.key.encode(), value)))

    made._on_record(record(BLOCK.key, None, signer.headers(MESSAGE_TYPE, BLOCK.key.encode(), None)))

    assert all(rejected(metrics, reason) == 0 for reason in ("unsigned", "unknown_key", "bad_signature"))
    assert blocklist.blocking([BLOCK.key]) == BLOCK
