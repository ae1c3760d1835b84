"""The provider a call goes to, named before the call as LiteLLM logs it (`custom_llm_provider`)."""

import pytest

from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.providers import provider_of_model


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o", "openai"),
        ("openai/gpt-4o", "openai"),
        ("azure/my-deployment", "azure"),
        ("anthropic/claude-haiku-4-5", "anthropic"),
        ("claude-haiku-4-5", "anthropic"),
        ("no-such-model-anywhere", None),
        ("", None),
        (None, None),
        (["gpt-4o"], None),
    ],
)
def test_an_sdk_models_provider_is_litellms(model: object, provider: str | None) -> None:
    assert provider_of_model(model, proxy=False) == provider


def test_a_proxy_without_a_router_names_no_provider() -> None:
    # outside a running proxy there is no router: no provider budget can refuse before the call
    assert provider_of_model("gpt-4o", proxy=True) is None


def test_an_sdk_call_is_checked_against_its_models_provider() -> None:
    who = RequestIdentity.of_sdk_call(user=None, metadata={"tags": ["batch"]}, model="openai/gpt-4o")

    assert who.budget_keys()[-2:] == ["tag:batch", "provider:openai"]
