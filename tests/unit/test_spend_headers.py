"""A response refused for the key's own budget carries LiteLLM's key spend headers with the
enforcer's figures, not the proxy's own count (`0.0` where it counts none)."""

from decimal import Decimal

from litellm.proxy._types import UserAPIKeyAuth

from spendpipe.contracts.scopes import hash_api_key
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.plugin import SpendpipeLogger
from tests.unit.test_plugin_policy import block, plugin

KEY = hash_api_key("sk-spent")
AUTH = UserAPIKeyAuth(api_key=KEY, user_id="alice", team_id="eng", spend=0.0)
DATA = {"model": "gpt-4o", "messages": []}


def gateway(*decisions: object) -> SpendpipeLogger:
    blocklist = BlockList()
    blocklist.in_sync.set()
    for decision in decisions:
        blocklist.apply(decision)  # type: ignore[arg-type]
    return plugin(blocklist, "fail_open")


async def test_a_refusal_for_the_keys_budget_says_the_keys_exact_spend_and_cap() -> None:
    refused = gateway(block(f"key:{KEY}", spend=Decimal("0.002250000000000001"), cap=Decimal("0.002")))

    headers = await refused.async_post_call_response_headers_hook(DATA, AUTH, None)

    assert headers == {"x-litellm-key-spend": "0.002250000000000001", "x-litellm-key-max-budget": "0.002"}


async def test_other_blocks_and_unblocked_keys_leave_litellms_headers_alone() -> None:
    team_blocked = gateway(block("team:eng"))
    model_blocked = gateway(block(f"key:{KEY}", model="gpt-4o"))

    assert await team_blocked.async_post_call_response_headers_hook(DATA, AUTH, None) is None
    assert await model_blocked.async_post_call_response_headers_hook(DATA, AUTH, None) is None
    assert await gateway().async_post_call_response_headers_hook(DATA, AUTH, None) is None
