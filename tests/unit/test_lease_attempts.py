"""Each deployment attempt of an admitted call (a proxy request, an SDK call checked with its
`metadata`) reserves (docs/leases.md): the first runs on the admission's reservation; a router
retry or fallback after a failed attempt, whose log settled that reservation, reserves its
estimate again, for the model group it goes to."""

import asyncio
import os
import time
from decimal import Decimal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm import Router

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.leases.book import ChainState
from spendpipe.gateway.leases.gate import LeaseGate
from spendpipe.gateway.plugin import model_group_of
from spendpipe.gateway.rate_limits.leases import mark_lease
from spendpipe.gateway.recording.event_builder import CallOutcome
from tests.support.waiting import eventually
from tests.unit.test_lease_gate import grant_for
from tests.unit.test_plugin_policy import plugin

WHO = RequestIdentity(key_hash="k" * 64, team_id="eng")
MESSAGES = [{"role": "user", "content": "hi"}]
REQUEST = {"model": "gpt-4o-mini", "messages": MESSAGES}


def outcome(status: str, cost: str) -> CallOutcome:
    return CallOutcome(status=status, cost=Decimal(cost), billed_model="gpt-4o-mini", completion_tokens=5)


def funded_gate() -> tuple[LeaseGate, ChainState]:
    """A gate and its chain on team:eng, which holds $1."""
    gate = LeaseGate.without_kafka("gw", fail_closed=True)
    gate.put(validate_budget({"scope": "team:eng", "max_budget": "10", "headroom_leases": True}))
    needs = gate.needs(WHO, "gpt-4o-mini", REQUEST)
    now = time.monotonic()
    _, (ask,) = gate.book.reserve("setup", needs, "gpt-4o-mini", now)
    gate.book.apply(grant_for(ask, "1", "9"), now)
    gate.book.settle("setup", None)
    chain = gate.book.holding("team:eng")
    assert chain is not None
    return gate, chain


def test_a_retry_after_a_failed_attempt_reserves_again_and_its_success_settles_it() -> None:
    gate, chain = funded_gate()
    params: dict[str, object] = {}
    mark_lease(params, "r1")

    async def run() -> None:
        assert await gate.admit_request("r1", WHO, "gpt-4o-mini", REQUEST) is None
        estimate = chain.reserved
        assert estimate > 0
        assert await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST) is None  # the first attempt
        assert chain.reserved == estimate  # runs on the admission's reservation
        gate.settle_logged(params, outcome("failure", "0"))  # its failure is logged
        assert chain.reserved == 0
        assert await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST) is None  # the retry
        assert chain.reserved == estimate  # reserved again
        gate.settle_logged(params, outcome("success", "0.002"))
        assert chain.reserved == 0
        assert chain.used == Decimal("0.002")  # the retry's cost is charged to the chain
        assert await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST) is None  # the request is over
        assert chain.reserved == 0

    asyncio.run(run())


def test_a_retry_whose_predecessor_was_never_logged_frees_its_estimate_first() -> None:
    gate, chain = funded_gate()

    async def run() -> None:
        await gate.admit_request("r1", WHO, "gpt-4o-mini", REQUEST)
        estimate = chain.reserved
        await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST)
        await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST)
        assert chain.reserved == estimate  # one attempt's estimate, not two

    asyncio.run(run())


def test_a_retry_is_refused_when_its_chain_cannot_cover_it() -> None:
    gate, _ = funded_gate()
    params: dict[str, object] = {}
    mark_lease(params, "r1")

    async def run() -> None:
        await gate.admit_request("r1", WHO, "gpt-4o-mini", REQUEST)
        await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST)
        gate.settle_logged(params, outcome("failure", "0.9999"))  # the failed attempt cost nearly all
        _, (ask,) = gate.book.reserve("other", {"team:eng": ("team:eng", "", Decimal(1))}, "m", time.monotonic())
        gate.book.apply(grant_for(ask, "1", "0", headroom="0"), time.monotonic())  # the enforcer: spent
        decision = await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST)
        assert decision is not None
        assert decision.blocked

    asyncio.run(run())


def test_a_request_that_ended_has_no_more_attempts() -> None:
    gate, chain = funded_gate()

    async def run() -> None:
        await gate.admit_request("r1", WHO, "gpt-4o-mini", REQUEST)
        gate.release("r1")  # the proxy's failure hook: the request failed for good
        assert await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST) is None
        assert await gate.admit_attempt("r1", "gpt-4o-mini", REQUEST) is None
        assert chain.reserved == 0

    asyncio.run(run())


def test_an_attempt_is_estimated_for_the_model_group_the_router_sends_it_to() -> None:
    assert model_group_of({"model": "openai/gpt-4o", "metadata": {"model_group": "fallback"}}) == "fallback"
    assert model_group_of({"model": "gpt-4o", "litellm_metadata": {"model_group": "g"}, "metadata": {}}) == "g"
    assert model_group_of({"model": "gpt-4o"}) == "gpt-4o"


def test_an_sdk_routers_fallback_after_a_failed_attempt_reserves_and_settles() -> None:
    """A real LiteLLM `Router` in SDK mode: `acheck()` reserves, the `broken` deployment fails
    (`mock_response` raising), the router falls back to gpt-4o-mini, whose attempt reserves again
    in the plugin's deployment hook and whose success log settles its exact cost."""
    gate, chain = funded_gate()
    blocklist = BlockList()
    blocklist.in_sync.set()
    spend = plugin(blocklist, "fail_closed", leases=gate)
    router = Router(
        model_list=[
            {
                "model_name": "broken",
                "litellm_params": {
                    "model": "gpt-4o-mini",
                    "mock_response": "litellm.InternalServerError",
                    "api_key": "x",
                },
            },
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {"model": "gpt-4o-mini", "mock_response": "hi", "api_key": "x"},
            },
        ],
        fallbacks=[{"broken": ["gpt-4o-mini"]}],
        num_retries=0,
    )
    reserved: list[Decimal] = []

    async def run() -> Decimal:
        metadata: dict[str, object] = {"user_api_key_team_id": "eng"}
        await spend.acheck(model="gpt-4o-mini", metadata=metadata, messages=MESSAGES)
        reserved.append(chain.reserved)
        response = await router.acompletion(model="broken", messages=MESSAGES, metadata=metadata)
        await eventually(lambda: chain.reserved, lambda r: r == 0, within=10, what="the fallback's settlement")
        return cost_from_float(response._hidden_params["response_cost"])

    callbacks = litellm.callbacks
    litellm.callbacks = [spend]
    try:
        cost = asyncio.run(run())
    finally:
        litellm.callbacks = callbacks
        spend.close(timeout=1)
    assert reserved[0] > 0
    assert cost > 0
    assert chain.used == cost  # the fallback's cost, charged to the chain it reserved on
