"""The gateway plugin's refusal logic, without Kafka: the fail-open/fail-closed policy before
the block list is in sync, and the error LiteLLM's callers see."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import litellm
import pytest
from litellm.proxy._types import ProxyException, UserAPIKeyAuth
from prometheus_client import CollectorRegistry

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import hash_api_key
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.leases.gate import LeaseGate
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.rate_limits.gate import RateGate
from spendpipe.gateway.rate_limits.leases import LEASE_FIELD
from spendpipe.gateway.rate_limits.limit_follower import LimitFollower
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings


class IdleFollower:
    """Stands in for the decisions reader: never connects, so the list stays as the test sets it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class IdleLimits(IdleFollower):
    """Stands in for the limits reader: in sync when the test says so."""

    def __init__(self) -> None:
        self.in_sync = threading.Event()


def plugin(
    blocklist: BlockList,
    policy: str,
    *,
    gate: RateGate | None = None,
    limits: IdleLimits | None = None,
    sync_wait_s: float = 0,
    close_wait_s: float = 0,
    leases: LeaseGate | None = None,
) -> SpendpipeLogger:
    metrics = GatewayMetrics(registry=CollectorRegistry())
    publisher = EventPublisher(
        kafka=KafkaSettings(),
        topic="spend.events",
        spool=DiskSpool(directory=Path("/nonexistent/never-used"), max_bytes=1024),
        metrics=metrics,
        options=PublisherOptions(),
    )
    # nothing here may touch Kafka: `start()` and every hand-over start the thread through `_start`
    publisher._start = lambda: None  # type: ignore[method-assign]
    return SpendpipeLogger(
        publisher=publisher,
        metrics=metrics,
        gateway_id="g",
        blocklist=blocklist,
        follower=cast(DecisionFollower, IdleFollower()),
        unsynced_policy=policy,
        gate=gate,
        limit_follower=cast(LimitFollower, limits),
        sync_wait_s=sync_wait_s,
        close_wait_s=close_wait_s,
        leases=leases,
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
    assert plugin(BlockList(), "fail_open").blocking_decision(RequestIdentity(team_id="eng")) is None


def test_fail_closed_refuses_before_the_block_list_is_in_sync_and_serves_after() -> None:
    blocklist = BlockList()
    gateway = plugin(blocklist, "fail_closed")

    refused = gateway.blocking_decision(RequestIdentity(team_id="eng"))
    assert refused is not None
    assert "fail closed" in refused.reason

    blocklist.in_sync.set()
    assert gateway.blocking_decision(RequestIdentity(team_id="eng")) is None


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


async def test_an_sdk_call_that_passes_its_model_positionally_is_refused_as_one_by_keyword() -> None:
    """`acompletion("openai/gpt-4o", messages)`: LiteLLM hands the deployment hook only the
    keyword arguments, so the model comes from the call's logging object."""
    blocklist = BlockList()
    blocklist.in_sync.set()
    blocklist.apply(block("provider:openai"))
    gateway = plugin(blocklist, "fail_open")
    gateway.refuses_sdk_calls = True
    litellm.callbacks = [gateway]
    messages = [{"role": "user", "content": "hi"}]
    try:
        for call in (
            litellm.acompletion(model="openai/gpt-4o", messages=messages, mock_response="ok", api_key="sk-x"),
            litellm.acompletion("openai/gpt-4o", messages, mock_response="ok", api_key="sk-x"),
        ):
            with pytest.raises(litellm.BudgetExceededError, match="provider:openai"):
                await call
    finally:  # LiteLLM copies callbacks into lists of its own: take it out of every one
        litellm.logging_callback_manager.remove_callback_from_all_lists(gateway)
        litellm.callbacks = []


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


ALICE = UserAPIKeyAuth(api_key=hash_api_key("sk-alice"), user_id="alice", team_id="eng")


def one_slot_gateway() -> SpendpipeLogger:
    """In sync, with `max_parallel_requests` 1 on alice's key."""
    blocklist = BlockList()
    blocklist.in_sync.set()
    gate = RateGate()
    gate.put(validate_budget({"scope": f"key:{hash_api_key('sk-alice')}", "max_parallel_requests": 1}))
    return plugin(blocklist, "fail_open", gate=gate)


async def test_fail_closed_refuses_until_the_rate_limits_are_read_and_readyz_waits_for_them() -> None:
    blocklist, limits = BlockList(), IdleLimits()
    blocklist.in_sync.set()
    gateway = plugin(blocklist, "fail_closed", limits=limits)

    assert gateway.ops.readiness.report()["limits"] != "ready"
    with pytest.raises(ProxyException) as refused:
        await gateway.async_pre_call_hook(ALICE, None, {"model": "gpt-4o"}, "completion")
    assert "rate limits" in refused.value.message

    limits.in_sync.set()
    assert gateway.ops.readiness.report()["limits"] == "ready"
    assert await gateway.async_pre_call_hook(ALICE, None, {"model": "gpt-4o"}, "completion") is not None


async def test_fail_open_serves_before_the_rate_limits_are_read() -> None:
    blocklist = BlockList()
    blocklist.in_sync.set()
    gateway = plugin(blocklist, "fail_open", limits=IdleLimits())

    assert await gateway.async_pre_call_hook(ALICE, None, {"model": "gpt-4o"}, "completion") is not None


async def test_the_lease_goes_where_litellm_keeps_its_own_metadata_and_is_found_there() -> None:
    gateway = one_slot_gateway()
    # /v1/messages, /responses, ...: `metadata` is the client's, sent on to the provider
    messages = {"model": "m", "metadata": {"user_id": "client-value"}, "litellm_metadata": {}}
    bare = {"model": "m"}  # /chat/completions without metadata

    await gateway.async_pre_call_hook(ALICE, None, messages, "anthropic_messages")
    assert messages["metadata"] == {"user_id": "client-value"}
    assert LEASE_FIELD in messages["litellm_metadata"]
    await gateway.async_post_call_failure_hook(messages, RuntimeError("provider down"), ALICE)

    await gateway.async_pre_call_hook(ALICE, None, bare, "completion")  # the slot was given back
    assert LEASE_FIELD in bare["metadata"]
    await gateway.async_post_call_failure_hook(bare, RuntimeError("provider down"), ALICE)
    assert await gateway.async_pre_call_hook(ALICE, None, {"model": "m"}, "completion") is not None


async def test_a_failed_attempt_the_router_retries_keeps_the_slot_until_the_request_ends() -> None:
    gateway = one_slot_gateway()
    data: dict[str, Any] = {"model": "m", "metadata": {}}
    await gateway.async_pre_call_hook(ALICE, None, data, "completion")

    # LiteLLM logs every failed attempt of a request it retries or falls back from
    await gateway.async_log_failure_event({"litellm_params": {"metadata": data["metadata"]}}, None, None, None)
    with pytest.raises(litellm.RateLimitError):
        await gateway.async_pre_call_hook(ALICE, None, {"model": "m"}, "completion")

    usage = SimpleNamespace(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    await gateway.async_post_call_success_hook(data, ALICE, SimpleNamespace(usage=usage))  # the retry succeeded
    assert await gateway.async_pre_call_hook(ALICE, None, {"model": "m"}, "completion") is not None


async def test_a_streamed_call_frees_its_slot_when_it_is_logged() -> None:
    """A stream's response hook sees no usage; its log ends its lease (and counts its tokens)."""
    gateway = one_slot_gateway()
    data: dict[str, Any] = {"model": "m", "metadata": {}}
    await gateway.async_pre_call_hook(ALICE, None, data, "completion")
    await gateway.async_post_call_success_hook(data, ALICE, SimpleNamespace())  # a stream: no usage yet
    with pytest.raises(litellm.RateLimitError):
        await gateway.async_pre_call_hook(ALICE, None, {"model": "m"}, "completion")

    logged = {"model": "m", "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "response_cost": 0.0}
    kwargs = {"litellm_params": {"metadata": data["metadata"]}, "standard_logging_object": logged}
    await gateway.async_log_success_event(kwargs, None, None, None)
    assert await gateway.async_pre_call_hook(ALICE, None, {"model": "m"}, "completion") is not None


class SessionEnds:
    """Stands in for the session gate: which reservations the plugin ends, and how."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    def marked(self, data: Any) -> bool:
        return True  # every call a granted session's: only the request's end may end it

    def release(self, data: Any) -> None:
        self.ended.append("release")

    def settle(self, data: Any, cost: Any) -> None:
        self.ended.append("settle")


async def test_a_failed_attempt_the_router_retries_keeps_the_session_reservation_until_the_request_ends() -> None:
    gateway = one_slot_gateway()
    ends = SessionEnds()
    gateway.sessions = ends  # type: ignore[assignment]
    data: dict[str, Any] = {"model": "m", "metadata": {}}

    await gateway.async_log_failure_event({"litellm_params": {"metadata": data["metadata"]}}, None, None, None)
    assert ends.ended == []  # a retry may still run, and cost

    await gateway.async_post_call_failure_hook(data, RuntimeError("all attempts failed"), ALICE)
    assert ends.ended == ["release"]
