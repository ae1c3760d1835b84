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


def test_a_proxy_names_the_one_provider_of_a_model_groups_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm import Router  # noqa: PLC0415
    from litellm.proxy import proxy_server  # noqa: PLC0415

    router = Router(
        model_list=[
            {"model_name": "chat", "litellm_params": {"model": "gpt-4o", "api_key": "n"}},
            {"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "n"}},
            {"model_name": "fast", "litellm_params": {"model": "anthropic/claude-haiku-4-5", "api_key": "n"}},
            {"model_name": "mixed", "litellm_params": {"model": "gpt-4o", "api_key": "n"}},
            {"model_name": "mixed", "litellm_params": {"model": "anthropic/claude-haiku-4-5", "api_key": "n"}},
        ]
    )
    monkeypatch.setattr(proxy_server, "llm_router", router)

    assert provider_of_model("chat", proxy=True) == "openai"
    assert provider_of_model("fast", proxy=True) == "anthropic"
    # several providers: none is known before the router picks a deployment
    assert provider_of_model("mixed", proxy=True) is None
    assert provider_of_model("no-such-group", proxy=True) is None


def test_a_groups_provider_follows_the_routers_deployments_as_they_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm import Router  # noqa: PLC0415
    from litellm.proxy import proxy_server  # noqa: PLC0415

    router = Router(model_list=[{"model_name": "chat", "litellm_params": {"model": "gpt-4o", "api_key": "n"}}])
    monkeypatch.setattr(proxy_server, "llm_router", router)
    assert provider_of_model("chat", proxy=True) == "openai"  # read, then kept for this version

    anthropic = {"model": "anthropic/claude-haiku-4-5", "api_key": "n"}
    router.set_model_list([{"model_name": "chat", "litellm_params": anthropic}])
    assert provider_of_model("chat", proxy=True) == "anthropic"

    other = Router(model_list=[{"model_name": "chat", "litellm_params": {"model": "gpt-4o", "api_key": "n"}}])
    monkeypatch.setattr(proxy_server, "llm_router", other)  # another router, whatever its version
    assert provider_of_model("chat", proxy=True) == "openai"
