"""SDK mode without ceremony: LiteLLM's own pre-call hook of async calls refuses a blocked call
(no `check()`), `guard()` does it for sync calls, and `litellm.max_budget` holds for the process.
Real LiteLLM SDK calls answered by `mock_response`; no Kafka (the block list is set by the test)."""

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import cast

import litellm
import pytest

from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.refusals import BUDGET_REFUSAL, RATE_LIMIT_REFUSAL
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.process_budget import ProcessBudget
from tests.support.waiting import eventually
from tests.unit.test_plugin_policy import block, plugin

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[SpendEvent]:
    return []


def _built(build: Callable[[], SpendEvent | None], published: list[SpendEvent]) -> None:
    """The publisher's part, done at once: build the event and keep it."""
    event = build()
    if event is not None:
        published.append(event)


@pytest.fixture
def gateway(published: list[SpendEvent], monkeypatch: pytest.MonkeyPatch) -> Iterator[SpendpipeLogger]:
    """The plugin in LiteLLM's callbacks, `team:search` blocked; its events land in `published`."""
    blocklist = BlockList()
    blocklist.in_sync.set()
    blocklist.apply(block("team:search"))
    logger = plugin(blocklist, "fail_open")
    logger.refuses_sdk_calls = True  # as `spendpipe.install()` sets it up
    monkeypatch.setattr(logger.publisher, "publish_deferred", lambda build: _built(build, published))
    litellm.callbacks.append(logger)
    try:
        yield logger
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(logger)
        logger.close()


async def test_an_async_call_of_a_blocked_team_is_refused_without_check(gateway: SpendpipeLogger) -> None:
    with pytest.raises(litellm.BudgetExceededError) as refused:
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hi", metadata={"team": "search"})

    assert type(refused.value).__name__ == BUDGET_REFUSAL
    assert "team:search" in str(refused.value)
    served = await litellm.acompletion(
        model="gpt-4o", messages=MESSAGES, mock_response="hi", metadata={"team": "other"}
    )
    assert served.choices[0].message.content == "hi"


async def test_a_pipeline_wide_rate_limit_refuses_an_async_call_as_litellms_rate_limit_error(
    gateway: SpendpipeLogger,
) -> None:
    gateway.blocklist.apply(block("key:" + "a" * 64, kind="rate_limit", rate_limit_type="requests"))

    with pytest.raises(litellm.RateLimitError) as refused:
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hi", metadata={"key": "a" * 64})

    assert type(refused.value).__name__ == RATE_LIMIT_REFUSAL


async def test_the_refused_call_is_logged_as_spendpipes_refusal_at_no_cost(
    gateway: SpendpipeLogger, published: list[SpendEvent]
) -> None:
    with pytest.raises(litellm.BudgetExceededError):
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hi", metadata={"team": "search"})

    (event,) = await eventually(lambda: list(published), bool, within=10, what="the refusal logged")
    assert (event.status, event.error_class, event.cost, event.team_id) == ("failure", BUDGET_REFUSAL, 0, "search")


async def test_the_proxys_plugin_leaves_its_requests_to_the_pre_call_hook(gateway: SpendpipeLogger) -> None:
    gateway.refuses_sdk_calls = False  # as the proxy's handler is set up
    request = {"model": "gpt-4o", "metadata": {"team": "search"}}

    assert await gateway.async_pre_call_deployment_hook(request, None) is None


def test_a_sync_call_is_refused_through_guard(gateway: SpendpipeLogger) -> None:
    completion = gateway.guard(litellm.completion)

    with pytest.raises(litellm.BudgetExceededError) as refused:
        completion(model="gpt-4o", messages=MESSAGES, mock_response="hi", metadata={"team": "search"})

    assert "team:search" in str(refused.value)
    assert completion(model="gpt-4o", messages=MESSAGES, mock_response="hi", user="acme").choices
    assert completion.__name__ == "completion"


@pytest.fixture
def process_budget(gateway: SpendpipeLogger) -> Iterator[ProcessBudget]:
    saved = litellm.max_budget, litellm._current_cost
    litellm._current_cost = 0.0
    gateway.process_budget = ProcessBudget()
    try:
        yield gateway.process_budget
    finally:
        litellm.max_budget, litellm._current_cost = saved


async def test_litellm_max_budget_refuses_async_calls_once_the_process_spent_it(process_budget: ProcessBudget) -> None:
    litellm.max_budget = 0.0005  # a mocked gpt-4o call costs 0.000225 or so

    async def call() -> Exception | None:
        try:
            await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hello")
        except litellm.BudgetExceededError as error:
            return cast(Exception, error)
        return None

    refusal = await eventually(call, bool, within=30, what="the process budget refuses")

    assert process_budget.spent > Decimal("0.0005")
    assert isinstance(refusal, litellm.BudgetExceededError)
    assert refusal.max_budget == 0.0005
    assert Decimal(str(refusal.current_cost)) == process_budget.spent


async def test_litellm_max_budget_refuses_sync_calls_too(process_budget: ProcessBudget) -> None:
    litellm.max_budget = 0.0005

    def call() -> Exception | None:
        try:
            litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="hello")
        except litellm.BudgetExceededError as error:
            return cast(Exception, error)
        return None

    refusal = await eventually(lambda: asyncio.to_thread(call), bool, within=30, what="the process budget refuses")

    assert isinstance(refusal, litellm.BudgetExceededError)
    assert process_budget.spent > Decimal("0.0005")


async def test_without_spendpipe_litellm_max_budget_never_refuses_a_chat_completion() -> None:
    """Why `ProcessBudget` exists: LiteLLM 1.110 never adds a chat completion to `_current_cost`."""
    saved = litellm.max_budget, litellm._current_cost
    litellm.max_budget, litellm._current_cost = 1e-9, 0.0
    try:
        for _ in range(3):
            await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hello")
        assert litellm._current_cost == 0.0
    finally:
        litellm.max_budget, litellm._current_cost = saved
