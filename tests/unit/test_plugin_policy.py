"""The gateway plugin's refusal logic, without Kafka: the fail-open/fail-closed policy before
the block list is in sync, and the error LiteLLM's callers see."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import litellm
import pytest
from litellm.proxy._types import ProxyException, UserAPIKeyAuth
from prometheus_client import CollectorRegistry

from spendpipe.platform.kafka import KafkaSettings
from spendpipe.schemas.decisions import Decision
from spendpipe.services.gateway.blocklist import BlockList
from spendpipe.services.gateway.decision_follower import DecisionFollower
from spendpipe.services.gateway.event_builder import hash_api_key
from spendpipe.services.gateway.metrics import GatewayMetrics
from spendpipe.services.gateway.plugin import SpendpipeLogger
from spendpipe.services.gateway.publisher import EventPublisher, PublisherOptions
from spendpipe.services.gateway.spool import DiskSpool


class IdleFollower:
    """Stands in for the decisions reader: never connects, so the list stays as the test sets it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def plugin(blocklist: BlockList, policy: str) -> SpendpipeLogger:
    metrics = GatewayMetrics(registry=CollectorRegistry())
    publisher = EventPublisher(
        kafka=KafkaSettings(),
        topic="spend.events",
        spool=DiskSpool(directory=Path("/nonexistent/never-used"), max_bytes=1024),
        metrics=metrics,
        options=PublisherOptions(),
    )
    publisher.start = lambda: None  # type: ignore[method-assign]  # nothing here may touch Kafka
    return SpendpipeLogger(
        publisher=publisher,
        metrics=metrics,
        gateway_id="g",
        blocklist=blocklist,
        follower=cast(DecisionFollower, IdleFollower()),
        unsynced_policy=policy,
    )


def block(scope: str, **fields: Any) -> Decision:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "scope": scope,
        "version": 1,
        "blocked": True,
        "reason": f"Budget has been exceeded! {scope}",
        "spend": Decimal("10.5"),
        "cap": Decimal("10"),
        "window": "24h",
        "expires_at": now + timedelta(hours=1),
        "decided_at": now,
    }
    return Decision(**values | fields)


def test_fail_open_serves_before_the_block_list_is_in_sync() -> None:
    assert plugin(BlockList(), "fail_open").blocking_decision(team_id="eng") is None


def test_fail_closed_refuses_before_the_block_list_is_in_sync_and_serves_after() -> None:
    blocklist = BlockList()
    gateway = plugin(blocklist, "fail_closed")

    refused = gateway.blocking_decision(team_id="eng")
    assert refused is not None
    assert "fail closed" in refused.reason

    blocklist.in_sync.set()
    assert gateway.blocking_decision(team_id="eng") is None


def test_sdk_check_raises_litellms_budget_error_for_a_blocked_key() -> None:
    blocklist = BlockList()
    blocklist.in_sync.set()
    raw_key = "sk-a-raw-key"
    blocklist.apply(block(f"key:{hash_api_key(raw_key)}"))
    gateway = plugin(blocklist, "fail_open")

    with pytest.raises(litellm.BudgetExceededError) as refused:
        gateway.check(model="gpt-4o", metadata={"user_api_key": raw_key})

    assert refused.value.current_cost == 10.5
    assert refused.value.max_budget == 10.0
    assert "Budget has been exceeded!" in refused.value.message
    gateway.check(model="gpt-4o", metadata={"user_api_key": "sk-another-key"})  # served


async def test_proxy_hook_raises_the_proxys_budget_exceeded_error() -> None:
    blocklist = BlockList()
    blocklist.in_sync.set()
    blocklist.apply(block("team_member:eng/alice"))
    gateway = plugin(blocklist, "fail_open")
    alice = UserAPIKeyAuth(api_key=hash_api_key("sk-alice"), user_id="alice", team_id="eng")
    bob = UserAPIKeyAuth(api_key=hash_api_key("sk-bob"), user_id="bob", team_id="eng")
    data = {"model": "gpt-4o", "messages": []}

    with pytest.raises(ProxyException) as refused:
        await gateway.async_pre_call_hook(alice, None, data, "completion")

    assert refused.value.type == "budget_exceeded"
    assert refused.value.code == str(litellm.budget_exceeded_status_code)
    assert await gateway.async_pre_call_hook(bob, None, data, "completion") == data
